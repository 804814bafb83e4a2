// A fresh WebAssembly instance runs this for every request.
export default async (event, context) => {
  const name = (typeof event.body === "string" ? event.body.trim() : "") || "world";
  return context.status(200).succeed(`Hello, ${name}, from JavaScript in WebAssembly!\n`);
};
