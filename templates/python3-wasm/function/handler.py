def handle(event, context):
    name = event.body.decode().strip() or "world"
    return {"statusCode": 200, "body": f"Hello, {name}, from Python in WebAssembly!\n"}
