// Parallel gzip (pigz's scheme): the input is cut into fixed-size blocks, each
// deflated on a worker thread with the previous block's last 32 KiB as its
// dictionary and ended with Z_SYNC_FLUSH (the last one with Z_FINISH); one gzip
// header as zlib writes it (MTIME 0, no name, OS 3) and a trailer whose CRC
// is crc32_combine'd from the blocks'. The bytes depend only on the input, the
// level and the block size — never on the number of threads. Blocks of
// near-random bytes are stored instead of deflated (see pgzip.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace cascade::oci {

class ParallelGzip {
  public:
    // Receives the compressed stream in order, always on the thread that
    // calls write() / finish().
    using Sink = std::function<void(const void* data, size_t size)>;

    static constexpr size_t kDefaultBlockSize = 256 * 1024;

    // level: 0..9 or -1 (zlib's default, 6). threads: worker threads, 0 for
    // std::thread::hardware_concurrency(); with 1 the caller compresses
    // inline. `what` names the output in error messages.
    ParallelGzip(Sink sink, int level, unsigned threads, std::string what,
                 size_t block_size = kDefaultBlockSize);
    ~ParallelGzip();
    ParallelGzip(const ParallelGzip&) = delete;
    ParallelGzip& operator=(const ParallelGzip&) = delete;

    void write(const void* data, size_t size);
    // Compresses what is buffered as the last block and writes the trailer.
    void finish();

    uint64_t input_bytes() const { return in_bytes_; }

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    uint64_t in_bytes_ = 0;
};

// Number of worker threads to use when the caller asked for `requested`
// (0 = one per hardware thread).
unsigned compression_threads(unsigned requested);

}  // namespace cascade::oci
