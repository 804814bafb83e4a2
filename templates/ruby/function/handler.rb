class Handler
  # body: the request body (a String); headers: request headers, lowercase.
  # Returns [body, response headers, status code].
  def run(body, _headers)
    name = body.strip.empty? ? 'world' : body.strip
    ["Hello, #{name}, from Ruby!\n", { 'content-type' => 'text/plain' }, 200]
  end
end
