#pragma once

#include <cstdint>
#include <string_view>

namespace h2loop::h2 {

// An open, read-only file whose descriptor may be shared by many responses
// (a file cache hands the same one to every stream that serves the file).
//
// Contract: addRef()/release() are called on the loop thread that owns the
// stream; the last release() closes the descriptor (or returns it to a cache).
// A stream that serves a file range holds exactly one reference from the
// moment the response is submitted until the stream is released to the pool,
// on every path (completed, reset, connection died).
class FileHandle {
 public:
  virtual ~FileHandle() = default;
  [[nodiscard]] virtual int fd() const = 0;
  // The whole file in memory, when the owner keeps it there (a cache holding
  // small files): the session then copies from it instead of pread(). Valid
  // while a reference is held; the same bytes pread() on fd() would return.
  // Empty: not held in memory.
  [[nodiscard]] virtual std::string_view memory() const { return {}; }
  virtual void addRef() = 0;
  virtual void release() = 0;
};

}  // namespace h2loop::h2
