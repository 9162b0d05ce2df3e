// The third-party poll() backend of examples/poll_loop proves itself with the
// shared loop contract suite: one line, as loop_contract.h describes.

#include "eventloop/loop_contract.h"
#include "examples/poll_loop/poll_loop.h"

namespace h2loop::test {
namespace {

INSTANTIATE_TEST_SUITE_P(PollExample, LoopContract,
                         ::testing::Values(LoopMaker{"poll", &pollex::makePollLoop}), backendName);

}  // namespace
}  // namespace h2loop::test
