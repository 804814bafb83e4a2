"use strict";

module.exports = async (event, context) => {
  const name = (typeof event.body === "string" ? event.body.trim() : "") || "world";
  return context.status(200).succeed(`Hello, ${name}, from Node.js!\n`);
};
