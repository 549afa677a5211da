// One WebSocket connection after the upgrade, on a plain TCP socket framed by ws_protocol.
// Internal to web/ (Asio is visible here); http_server.cpp starts these.
//
// Contract:
// - Reading runs on the connection's strand: whole messages go to its ws_handler one at a
//   time, in order; pings are answered; a protocol violation or an oversized message is
//   answered with the close code the RFC asks for (1002, 1007, 1009) and ends the connection.
// - `send` (ws_connection) may be called from any thread and never blocks. When nothing is
//   queued it writes the frame at once with one non-blocking sendmsg on the calling thread
//   (so a fan-out to 10,000 connections is 10,000 syscalls and no hand-offs); what the socket
//   does not take is queued and written from the strand when the socket is writable. Frames
//   leave whole and in order. Renders coalesce as live.hpp says.
// - A write that makes no progress for `stall_timeout`, or queued output over
//   `max_pending_bytes`, closes the connection (the client stopped reading).
// - Keep-alive: a client heard nothing from for half of `idle_timeout` is pinged; one still
//   silent at `idle_timeout` gets close 1001.
// - Closing: a close frame from the client is answered with its code. At server shutdown a
//   connection stops reading, waits for the answers of its actions in flight (they count as
//   requests in flight, so the server's drain waits for them within its grace), then sends
//   close 1001. After our close frame we half-close and wait up to 5 s for the client's end.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <string>

#include "web/http_server_impl.hpp"

namespace tessera::web {

// Answers `request` (already checked with ws::check_upgrade) with 101 and runs the connection.
// `early` holds bytes the client sent after its request. Call on the socket's strand.
void start_ws_session(boost::asio::ip::tcp::socket socket,
                      const boost::beast::http::request<boost::beast::http::string_body>& request,
                      std::string early, http_server::impl& server);

// Tells every open connection that the server is going away (close 1001). Any thread.
void close_ws_sessions(http_server::impl& server);

}  // namespace tessera::web
