#pragma once

// The loop contract suite: written once, instantiated for every backend.
//
// A third-party backend proves itself by adding one line to a test file:
//
//   INSTANTIATE_TEST_SUITE_P(Mine, LoopContract,
//       ::testing::Values(h2loop::test::LoopMaker{"mine", &makeMyLoop}),
//       h2loop::test::backendName);
//
// The tests use no sleeps: they wait on events (readiness, timers, posted
// functions, futures) and count loop iterations by chaining post() calls.

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>

#include "eventloop/loop.h"

namespace h2loop::test {

struct LoopMaker {
  std::string name;
  std::function<std::unique_ptr<ev::Loop>()> make;
};

inline std::string backendName(const ::testing::TestParamInfo<LoopMaker>& info) {
  return info.param.name;
}

class LoopContract : public ::testing::TestWithParam<LoopMaker> {
 protected:
  void SetUp() override { loop_ = GetParam().make(); }
  void TearDown() override {
    if (loop_) {
      const ev::LoopStats s = loop_->stats();
      EXPECT_EQ(s.watches, 0u);
      EXPECT_EQ(s.registered, 0u);
      EXPECT_EQ(s.timers, 0u);
      EXPECT_EQ(s.pending_deletions, 0u);
    }
    loop_.reset();
  }

  // Runs `n` loop iterations: each posted function re-posts the next one, so
  // every iteration also collects and dispatches whatever I/O is ready.
  void runIterations(int n);

  std::unique_ptr<ev::Loop> loop_;
};

}  // namespace h2loop::test
