// ferrofaas node template: serves function/handler.js over HTTP on
// 127.0.0.1:$PORT, in http mode behind the watchdog. Not for editing: write
// the function in function/handler.js.
"use strict";
const http = require("http");
const handler = require("./function/handler");

class Context {
  constructor() {
    this.statusCode = 200;
    this.headerValues = {};
    this.result = undefined;
    this.error = undefined;
  }
  status(code) { if (code === undefined) return this.statusCode; this.statusCode = code; return this; }
  headers(values) { if (values === undefined) return this.headerValues; this.headerValues = values; return this; }
  succeed(value) { this.result = value; return this; }
  fail(error) { this.error = error; return this; }
}

function encode(body, headers) {
  if (body === undefined || body === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === "object") {
    if (!Object.keys(headers).some((k) => k.toLowerCase() === "content-type")) headers["Content-Type"] = "application/json";
    return Buffer.from(JSON.stringify(body));
  }
  return Buffer.from(String(body));
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", async () => {
    const url = new URL(req.url, "http://function");
    const raw = Buffer.concat(chunks);
    const isJson = (req.headers["content-type"] || "").includes("application/json");
    let body = raw.toString();
    if (isJson && raw.length) { try { body = JSON.parse(body); } catch (_) { /* leave as text */ } }
    const event = { body, rawBody: raw, headers: req.headers, method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams) };
    const context = new Context();
    let status = 500;
    let headers = {};
    let data;
    try {
      const returned = await handler(event, context);
      if (context.error !== undefined) throw context.error;
      status = context.statusCode;
      headers = { ...context.headerValues };
      data = encode(context.result !== undefined ? context.result : returned, headers);
    } catch (err) {
      console.error(err);
      data = Buffer.from("the function failed; see its logs\n");
    }
    headers["Content-Length"] = data.length;
    res.writeHead(status, headers);
    res.end(data);
  });
});
server.keepAliveTimeout = 120000;
server.listen(Number(process.env.PORT || 3000), "127.0.0.1");
