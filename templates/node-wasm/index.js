// ferrofaas node-wasm template: function/handler.js's default export,
// async (event, context), as a wasi:http component (componentize-js,
// StarlingMonkey), a fresh instance per request. Not for editing: write
// the function in function/handler.js.
import handler from "./function/handler.js";

class Context {
  constructor() {
    this.statusCode = 200;
    this.headerValues = {};
    this.result = undefined;
    this.error = undefined;
  }
  status(code) {
    this.statusCode = code;
    return this;
  }
  headers(values) {
    this.headerValues = values;
    return this;
  }
  succeed(body) {
    this.result = body;
    return this;
  }
  fail(error) {
    this.error = error;
    return this;
  }
}

async function event(request) {
  const url = new URL(request.url);
  const headers = {};
  for (const [name, value] of request.headers) headers[name] = value;
  let body = await request.text();
  if ((headers["content-type"] || "").startsWith("application/json") && body.length > 0) {
    try {
      body = JSON.parse(body);
    } catch (_) {
      // not JSON after all: the handler gets the text
    }
  }
  const query = {};
  for (const [name, value] of url.searchParams) query[name] = value;
  return { body, headers, method: request.method, path: url.pathname, query };
}

function response(context, returned) {
  if (context.error !== undefined) {
    const message = context.error instanceof Error ? context.error.message : String(context.error);
    return new Response(JSON.stringify({ error: message }), {
      status: 500,
      headers: { "content-type": "application/json" },
    });
  }
  let body = returned instanceof Context ? context.result : returned;
  const headers = { ...context.headerValues };
  if (body === undefined || body === null) {
    body = "";
  } else if (typeof body === "object" && !(body instanceof Uint8Array) && !(body instanceof ArrayBuffer)) {
    body = JSON.stringify(body);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === "content-type")) {
      headers["content-type"] = "application/json";
    }
  } else if (typeof body !== "string" && !(body instanceof Uint8Array) && !(body instanceof ArrayBuffer)) {
    body = String(body);
  }
  return new Response(body, { status: context.statusCode, headers });
}

addEventListener("fetch", (fetchEvent) =>
  fetchEvent.respondWith(
    (async () => {
      const context = new Context();
      try {
        const returned = await handler(await event(fetchEvent.request), context);
        return response(context, returned);
      } catch (error) {
        console.error(error && error.stack ? error.stack : String(error));
        return new Response(JSON.stringify({ error: String(error && error.message ? error.message : error) }), {
          status: 500,
          headers: { "content-type": "application/json" },
        });
      }
    })(),
  ),
);
