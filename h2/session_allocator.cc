#include "h2/session_allocator.h"

#include <bit>
#include <cstdlib>
#include <cstring>
#include <limits>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define H2LOOP_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define H2LOOP_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define H2LOOP_POISON(p, n) ((void)(p), (void)(n))
#define H2LOOP_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace h2loop::h2 {

// Precedes every block; 16 bytes keep the payload 16-byte aligned, as
// malloc's is.
struct alignas(16) SessionAllocator::Head {
  static constexpr uint32_t kLarge = ~uint32_t{0};
  uint32_t cls;  // size class, or kLarge (straight from/to malloc)
  union {
    size_t size;  // kLarge: the payload size asked for (realloc needs it)
    Head* next;   // a cached block: the next one in its free list
  };
  void* payload() { return this + 1; }
  static Head* of(void* p) { return static_cast<Head*>(p) - 1; }
};

namespace {
void* memMalloc(size_t size, void* ud) {
  return static_cast<SessionAllocator*>(ud)->allocate(size);
}
void memFree(void* p, void* ud) {
  static_cast<SessionAllocator*>(ud)->deallocate(p);
}
void* memCalloc(size_t n, size_t size, void* ud) {
  return static_cast<SessionAllocator*>(ud)->allocateZeroed(n, size);
}
void* memRealloc(void* p, size_t size, void* ud) {
  return static_cast<SessionAllocator*>(ud)->reallocate(p, size);
}
}  // namespace

SessionAllocator::SessionAllocator(size_t max_cached_bytes)
    : mem_{this, memMalloc, memFree, memCalloc, memRealloc}, max_cached_bytes_(max_cached_bytes) {
  static_assert(sizeof(Head) == 16 && alignof(Head) == 16);
}

SessionAllocator::~SessionAllocator() {
  for (Head*& list : free_) {
    while (list != nullptr) {
      Head* h = list;
      list = h->next;
      std::free(h);
    }
  }
}

size_t SessionAllocator::classOf(size_t size) {
  if (size <= kSmallestClass) return 0;
  // ceil(log2(size)) - log2(kSmallestClass)
  return static_cast<size_t>(std::bit_width(size - 1)) - std::bit_width(kSmallestClass - 1);
}

void* SessionAllocator::allocate(size_t size) {
  if (size <= kLargestClass) {
    const size_t cls = classOf(size);
    Head* h = free_[cls];
    if (h != nullptr) {
      free_[cls] = h->next;
      cached_bytes_ -= classSize(cls);
      H2LOOP_UNPOISON(h->payload(), classSize(cls));
      ++reused_;
    } else {
      h = static_cast<Head*>(std::malloc(sizeof(Head) + classSize(cls)));
      if (h == nullptr) return nullptr;
      h->cls = static_cast<uint32_t>(cls);
      ++fresh_;
    }
    ++outstanding_;
    return h->payload();
  }
  if (size > std::numeric_limits<size_t>::max() - sizeof(Head)) return nullptr;
  Head* h = static_cast<Head*>(std::malloc(sizeof(Head) + size));
  if (h == nullptr) return nullptr;
  h->cls = Head::kLarge;
  h->size = size;
  ++fresh_;
  ++outstanding_;
  return h->payload();
}

void SessionAllocator::deallocate(void* p) {
  if (p == nullptr) return;
  Head* h = Head::of(p);
  --outstanding_;
  if (h->cls == Head::kLarge || cached_bytes_ + classSize(h->cls) > max_cached_bytes_) {
    std::free(h);
    return;
  }
  H2LOOP_POISON(h->payload(), classSize(h->cls));
  h->next = free_[h->cls];
  free_[h->cls] = h;
  cached_bytes_ += classSize(h->cls);
}

void* SessionAllocator::allocateZeroed(size_t count, size_t size) {
  if (size != 0 && count > std::numeric_limits<size_t>::max() / size) return nullptr;
  void* p = allocate(count * size);
  if (p != nullptr) std::memset(p, 0, count * size);
  return p;
}

void* SessionAllocator::reallocate(void* p, size_t size) {
  if (p == nullptr) return allocate(size);
  Head* h = Head::of(p);
  const size_t capacity = h->cls == Head::kLarge ? h->size : classSize(h->cls);
  if (size <= capacity) return p;
  void* q = allocate(size);
  if (q == nullptr) return nullptr;  // p stays valid, as with realloc
  std::memcpy(q, p, capacity < size ? capacity : size);
  deallocate(p);
  return q;
}

}  // namespace h2loop::h2
