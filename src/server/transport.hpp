#pragma once

// The HTTP transport of `stagelog serve`: accepts connections, reads each request into an
// ApiRequest, asks the Api whether to take it (before any body is read), reads the body
// within the limits, and writes the Api's answer. Timeouts and limits come from ServerOptions.
//
// Threads: bind() and run() from one thread (run() blocks until stop()); stop() and running()
// from any.

#include <memory>

#include "server/api.hpp"
#include "stagelog/server/server.hpp"

namespace stagelog::detail {

class HttpTransport {
 public:
  // `api` and `options` must outlive the transport.
  HttpTransport(Api& api, const server::ServerOptions& options);
  ~HttpTransport();
  HttpTransport(const HttpTransport&) = delete;
  HttpTransport& operator=(const HttpTransport&) = delete;

  // Listens on options.host and options.port (0: any free port); returns the port. Throws
  // Error "cannot listen on 127.0.0.1:8080: Address already in use".
  int bind();
  // Serves until stop().
  void run();
  // Whether run() accepts connections.
  bool running() const;
  // Stops run()'s loop, when it runs (see Server::stop for the race this leaves).
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stagelog::detail
