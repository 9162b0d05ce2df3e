#include "server/access_log.h"

#include <spdlog/details/file_helper.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <mutex>
#include <stdexcept>

namespace h2loop::server {
namespace {

// A file sink that can open its file again by name (spdlog's basic file
// sink cannot). Every line is flushed: an access log is read while written.
class ReopenableFileSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit ReopenableFileSink(const std::filesystem::path& file) {
    file_.open(file.string(), /*truncate=*/false);
  }

  void reopen() {
    std::lock_guard lock(mutex_);
    // file_helper::reopen() closes first; open a second handle before
    // letting go of the first, so a failure keeps the old one writing.
    spdlog::details::file_helper next;
    next.open(file_.filename(), false);
    file_.close();
    file_.open(next.filename(), false);
  }

 private:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    file_.write(line);
    file_.flush();
  }
  void flush_() override { file_.flush(); }

  spdlog::details::file_helper file_;
};

std::mutex g_mutex;
std::shared_ptr<spdlog::logger> g_file_logger;  // null: the default logger
std::shared_ptr<ReopenableFileSink> g_sink;

}  // namespace

void setAccessLogFile(const std::filesystem::path& file) {
  std::shared_ptr<ReopenableFileSink> sink;
  std::shared_ptr<spdlog::logger> logger;
  if (!file.empty()) {
    try {
      sink = std::make_shared<ReopenableFileSink>(file);
    } catch (const spdlog::spdlog_ex& e) {
      throw std::runtime_error("access log " + file.string() + ": " + e.what());
    }
    sink->set_pattern("%Y-%m-%dT%H:%M:%S.%e %v");
    logger = std::make_shared<spdlog::logger>("access", sink);
    logger->set_level(spdlog::level::info);
  }
  std::lock_guard lock(g_mutex);
  g_sink = std::move(sink);
  g_file_logger = std::move(logger);
}

bool reopenAccessLog(std::string& error) {
  std::shared_ptr<ReopenableFileSink> sink;
  {
    std::lock_guard lock(g_mutex);
    sink = g_sink;
  }
  if (!sink) return true;
  try {
    sink->reopen();
  } catch (const spdlog::spdlog_ex& e) {
    error = e.what();
    return false;
  }
  return true;
}

std::shared_ptr<spdlog::logger> accessLogger() {
  std::lock_guard lock(g_mutex);
  return g_file_logger ? g_file_logger : spdlog::default_logger();
}

}  // namespace h2loop::server
