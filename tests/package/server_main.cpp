// Built against the installed package's server component: links stagelog::server (and what it
// links privately, cpp-httplib and OpenSSL) from the installed files alone.
#include <stagelog/server/server.hpp>

int main() {
  // A volatile read of the address keeps the reference at any optimisation level, so server.cpp's
  // object, and cpp-httplib with it, must link.
  decltype(&stagelog::server::Server::port) volatile port = &stagelog::server::Server::port;
  return port == nullptr ? 1 : 0;
}
