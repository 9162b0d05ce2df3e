#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <spdlog/logger.h>

namespace h2loop::server {

// Where access lines go: the process's log (spdlog's default logger) unless a
// file was set. Process-wide and thread-safe.
//
// Sends access lines to `file` (appended, created 0644 if missing) from now
// on; empty: back to the log. Throws std::runtime_error naming the file when
// it cannot be opened (the previous destination stays).
void setAccessLogFile(const std::filesystem::path& file);
// logrotate: the file is opened again by name (the old one was moved away).
// Returns false, with the reason in `error`, when that failed; lines then go
// on to the old descriptor rather than being lost.
bool reopenAccessLog(std::string& error);
// The logger to write one access line to (hold the pointer for that line).
[[nodiscard]] std::shared_ptr<spdlog::logger> accessLogger();

}  // namespace h2loop::server
