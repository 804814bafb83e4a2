// The node-wasm handler of crates/cli/tests/wasm.rs: a path per thing to try.
import { getEnvironment } from "wasi:cli/environment@0.2.10";
import { getDirectories } from "wasi:filesystem/preopens@0.2.10";

let count = 0;

function readFile(path) {
  for (const [dir, name] of getDirectories()) {
    if (!path.startsWith(name + "/")) continue;
    const file = dir.openAt({}, path.slice(name.length + 1), {}, { read: true });
    const [bytes] = file.read(65536n, 0n);
    return new TextDecoder().decode(bytes);
  }
  throw new Error(`no preopened folder holds ${path}`);
}

export default async (event, context) => {
  switch (event.path) {
    case "/count":
      count += 1;
      return String(count);
    case "/json":
      return context.status(201).headers({ "x-handler": "node-wasm" }).succeed({ got: event.body, query: event.query });
    case "/env":
      return Object.fromEntries(getEnvironment()).GREETING || "unset";
    case "/secret":
      return readFile("/var/openfaas/secrets/api-key");
    case "/file":
      try {
        return readFile(event.query.path);
      } catch (e) {
        return `refused: ${e}`;
      }
    case "/spin":
      for (;;) {}
    case "/memory": {
      const held = [];
      for (let i = 0; i < Number(event.query.mb); i++) held.push(new Uint8Array(1 << 20).fill(1));
      return String(held.length);
    }
    case "/fail":
      return context.fail(new Error("it failed"));
    default: {
      const name = (typeof event.body === "string" ? event.body.trim() : "") || "world";
      return `Hello, ${name}`;
    }
  }
};
