# ferrofaas ruby template: serves function/handler.rb over HTTP/1.1 on
# 127.0.0.1:$PORT, in http mode behind the watchdog (which sends whole
# bodies with a Content-Length). Not for editing: write the function in
# function/handler.rb.
require 'socket'

gemfile = File.join(__dir__, 'function', 'Gemfile')
if File.exist?(gemfile)
  ENV['BUNDLE_GEMFILE'] = gemfile
  require 'bundler/setup'
end
require_relative 'function/handler'

REASONS = { 200 => 'OK', 201 => 'Created', 202 => 'Accepted', 204 => 'No Content', 400 => 'Bad Request',
            404 => 'Not Found', 500 => 'Internal Server Error' }.freeze
$stdout.sync = true
handler = Handler.new
server = TCPServer.new('127.0.0.1', Integer(ENV.fetch('PORT', '5000')))

def serve(sock, handler)
  loop do
    line = sock.gets or break
    headers = {}
    while (h = sock.gets) && h != "\r\n"
      key, value = h.split(':', 2)
      headers[key.strip.downcase] = value.to_s.strip
    end
    length = headers['content-length'].to_i
    body = length.positive? ? sock.read(length) : ''
    begin
      res_body, res_headers, status = handler.run(body, headers)
    rescue StandardError => e
      warn e.full_message
      res_body, res_headers, status = "the function raised an exception; see its logs\n", {}, 500
    end
    res_body = res_body.to_s
    status = (status || 200).to_i
    out = +"HTTP/1.1 #{status} #{REASONS.fetch(status, 'Status')}\r\n"
    (res_headers || {}).each { |k, v| out << "#{k}: #{v}\r\n" }
    out << "Content-Length: #{res_body.bytesize}\r\n\r\n" << res_body
    sock.write(out)
    break if headers['connection'] == 'close' || line.end_with?("HTTP/1.0\r\n")
  end
rescue IOError, SystemCallError
  nil
ensure
  sock.close
end

loop do
  client = server.accept
  Thread.new(client) { |sock| serve(sock, handler) }
end
