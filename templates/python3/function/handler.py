def handle(req):
    """req is the request body as a string; the return value is the response."""
    return f"Hello from Python! You said: {req}\n"
