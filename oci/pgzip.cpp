#include "oci/pgzip.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "oci/error.hpp"

namespace cascade::oci {

namespace {

constexpr size_t kDictSize = 32 * 1024;

// Blocks whose bytes are this close to uniformly distributed (bits of Shannon
// entropy per byte; random data of 256 KiB measures 7.999) are stored rather
// than deflated: deflate cannot shrink them (compressed or encrypted content,
// /dev/urandom) and spends as long failing (~50 MB/s per core) as it does on
// text. Decided from the block's bytes alone, so still deterministic.
constexpr double kStoreEntropy = 7.97;

double byte_entropy(const std::string& in) {
    if (in.empty()) return 0;
    uint64_t counts[256] = {};
    // Four interleaved histograms: fewer store-to-load stalls on runs.
    uint32_t h[4][256] = {};
    const auto* p = reinterpret_cast<const unsigned char*>(in.data());
    size_t n = in.size(), i = 0;
    for (; i + 4 <= n; i += 4) {
        h[0][p[i]]++;
        h[1][p[i + 1]]++;
        h[2][p[i + 2]]++;
        h[3][p[i + 3]]++;
    }
    for (; i < n; i++)
        h[0][p[i]]++;
    double bits = 0;
    const double total = static_cast<double>(n);
    for (int b = 0; b < 256; b++) {
        counts[b] = uint64_t{h[0][b]} + h[1][b] + h[2][b] + h[3][b];
        if (counts[b]) {
            double f = static_cast<double>(counts[b]) / total;
            bits -= f * std::log2(f);
        }
    }
    return bits;
}

// One raw-deflate stream, reused block after block with deflateReset.
class Deflater {
  public:
    Deflater(int level, const std::string& what) {
        // windowBits -15: raw deflate; the gzip wrapper is written by hand.
        if (deflateInit2(&zs_, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            throw Error("zlib: deflateInit2 failed for " + what);
    }
    ~Deflater() { deflateEnd(&zs_); }
    Deflater(const Deflater&) = delete;
    Deflater& operator=(const Deflater&) = delete;

    // Deflates `in` primed with `dict`; ends with a sync flush (byte aligned,
    // not final) or, for the last block, the final block.
    void compress(const std::string& dict, const std::string& in, bool last, std::string& out,
                  const std::string& what) {
        if (deflateReset(&zs_) != Z_OK) throw Error("zlib: deflateReset failed for " + what);
        if (!dict.empty() && deflateSetDictionary(&zs_, reinterpret_cast<const Bytef*>(dict.data()),
                                                  static_cast<uInt>(dict.size())) != Z_OK)
            throw Error("zlib: deflateSetDictionary failed for " + what);
        out.resize(deflateBound(&zs_, in.size()) + 16);
        zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
        zs_.avail_in = static_cast<uInt>(in.size());
        size_t used = 0;
        const int flush = last ? Z_FINISH : Z_SYNC_FLUSH;
        while (true) {
            if (used == out.size()) out.resize(out.size() * 2);
            zs_.next_out = reinterpret_cast<Bytef*>(out.data() + used);
            zs_.avail_out = static_cast<uInt>(out.size() - used);
            int rc = deflate(&zs_, flush);
            used = out.size() - zs_.avail_out;
            if (rc == Z_STREAM_ERROR) throw Error("zlib: deflate failed writing " + what);
            if (last ? rc == Z_STREAM_END : (zs_.avail_in == 0 && zs_.avail_out != 0)) break;
        }
        out.resize(used);
    }

  private:
    z_stream zs_{};
};

// A worker's deflaters: one at the requested level, one storing.
struct Deflaters {
    Deflaters(int level, const std::string& what) : deflate(level, what), store(0, what) {}
    void compress(const std::string& dict, const std::string& in, bool last, std::string& out,
                  const std::string& what) {
        bool incompressible = in.size() >= 4096 && byte_entropy(in) >= kStoreEntropy;
        (incompressible ? store : deflate).compress(dict, in, last, out, what);
    }
    Deflater deflate, store;
};

struct Job {
    std::string dict;
    std::string input;
    bool last = false;
    std::string output;
    uLong crc = 0;
    bool done = false;
    std::exception_ptr error;
};

void put_le32(std::string& s, uint32_t v) {
    for (int i = 0; i < 4; i++)
        s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

unsigned compression_threads(unsigned requested) {
    if (requested) return requested;
    unsigned n = std::thread::hardware_concurrency();
    return n ? n : 1;
}

struct ParallelGzip::Impl {
    Sink sink;
    int level;
    std::string what;
    size_t block_size;
    unsigned threads;

    std::string current;  // the block being filled
    std::string tail;     // the last ≤32 KiB of input before `current`
    uLong crc = 0;
    uint64_t total = 0;
    bool finished = false;

    // Inline mode (one thread): compress on the caller.
    std::unique_ptr<Deflaters> inline_deflater;
    std::string inline_out;

    // Parallel mode.
    std::mutex mu;
    std::condition_variable work_cv, done_cv;
    std::deque<std::shared_ptr<Job>> todo;      // waiting for a worker
    std::deque<std::shared_ptr<Job>> inflight;  // submitted, in stream order
    bool stop = false;
    std::vector<std::thread> workers;

    Impl(Sink s, int lvl, unsigned n, std::string w, size_t bs)
        : sink(std::move(s)), level(lvl), what(std::move(w)), block_size(bs), threads(n) {
        current.reserve(block_size);
        if (threads <= 1) {
            inline_deflater = std::make_unique<Deflaters>(level, what);
        } else {
            // Create every deflater up front so an init failure throws here.
            std::vector<std::unique_ptr<Deflaters>> deflaters;
            for (unsigned i = 0; i < threads; i++)
                deflaters.push_back(std::make_unique<Deflaters>(level, what));
            for (auto& d : deflaters)
                workers.emplace_back(
                    [this, d = std::shared_ptr<Deflaters>(std::move(d))] { work(*d); });
        }
    }

    ~Impl() {
        {
            std::lock_guard lock(mu);
            stop = true;
        }
        work_cv.notify_all();
        for (auto& t : workers)
            t.join();
    }

    void work(Deflaters& d) {
        while (true) {
            std::shared_ptr<Job> job;
            {
                std::unique_lock lock(mu);
                work_cv.wait(lock, [&] { return stop || !todo.empty(); });
                if (stop) return;
                job = std::move(todo.front());
                todo.pop_front();
            }
            try {
                d.compress(job->dict, job->input, job->last, job->output, what);
                job->crc = crc32_z(0, reinterpret_cast<const Bytef*>(job->input.data()),
                                   job->input.size());
            } catch (...) {
                job->error = std::current_exception();
            }
            {
                std::lock_guard lock(mu);
                job->done = true;
            }
            done_cv.notify_all();
        }
    }

    void header() {
        // What zlib writes for a gzip wrapper: MTIME 0, no FNAME/FCOMMENT,
        // XFL from the level, OS 3 (Unix).
        unsigned char xfl = level == 9 ? 2 : (level == 1 || level == 0 ? 4 : 0);
        const unsigned char h[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3};
        sink(h, sizeof h);
    }

    void emit_block(const std::string& input_for_crc_len, uLong block_crc, const std::string& out) {
        crc = crc32_combine(crc, block_crc, static_cast<z_off_t>(input_for_crc_len.size()));
        if (!out.empty()) sink(out.data(), out.size());
    }

    // Hands `current` over as a block; `tail` advances to its last 32 KiB.
    void submit(bool last) {
        std::string dict = tail;
        if (current.size() >= kDictSize) {
            tail.assign(current, current.size() - kDictSize, kDictSize);
        } else {
            tail.append(current);
            if (tail.size() > kDictSize) tail.erase(0, tail.size() - kDictSize);
        }
        if (inline_deflater) {
            inline_deflater->compress(dict, current, last, inline_out, what);
            uLong c = crc32_z(0, reinterpret_cast<const Bytef*>(current.data()), current.size());
            emit_block(current, c, inline_out);
            current.clear();
            return;
        }
        auto job = std::make_shared<Job>();
        job->dict = std::move(dict);
        job->input = std::move(current);
        job->last = last;
        current = std::string();
        current.reserve(block_size);
        {
            std::lock_guard lock(mu);
            todo.push_back(job);
            inflight.push_back(job);
        }
        work_cv.notify_one();
        drain(last ? 0 : 2 * threads + 2);
    }

    // Writes finished blocks in order; waits until at most `keep` remain.
    void drain(size_t keep) {
        while (true) {
            std::shared_ptr<Job> job;
            {
                std::unique_lock lock(mu);
                if (inflight.empty()) return;
                if (inflight.size() > keep)
                    done_cv.wait(lock, [&] { return inflight.front()->done; });
                else if (!inflight.front()->done)
                    return;
                job = std::move(inflight.front());
                inflight.pop_front();
            }
            if (job->error) std::rethrow_exception(job->error);
            emit_block(job->input, job->crc, job->output);
        }
    }
};

ParallelGzip::ParallelGzip(Sink sink, int level, unsigned threads, std::string what,
                           size_t block_size) {
    if (level == -1) level = 6;
    if (level < 0 || level > 9)
        throw Error("gzip compression level " + std::to_string(level) +
                    " is out of range (0..9, or -1 for the default)");
    if (block_size < kDictSize) block_size = kDictSize;
    impl_ = std::make_unique<Impl>(std::move(sink), level, compression_threads(threads),
                                   std::move(what), block_size);
    impl_->header();
}

ParallelGzip::~ParallelGzip() = default;

void ParallelGzip::write(const void* data, size_t size) {
    auto& d = *impl_;
    if (d.finished) throw Error("ParallelGzip: write after finish for " + d.what);
    const char* p = static_cast<const char*>(data);
    in_bytes_ += size;
    while (size > 0) {
        size_t take = std::min(size, d.block_size - d.current.size());
        d.current.append(p, take);
        p += take;
        size -= take;
        if (d.current.size() == d.block_size) d.submit(false);
    }
}

void ParallelGzip::finish() {
    auto& d = *impl_;
    if (d.finished) return;
    d.finished = true;
    d.submit(true);
    d.drain(0);
    std::string trailer;
    put_le32(trailer, static_cast<uint32_t>(d.crc));
    put_le32(trailer, static_cast<uint32_t>(in_bytes_ & 0xffffffffu));
    d.sink(trailer.data(), trailer.size());
}

}  // namespace cascade::oci
