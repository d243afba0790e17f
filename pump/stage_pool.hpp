// stage_pool: the pipes (splice path) and buffers (copy path) that hold a
// pair's bytes between reading them from one peer and writing them to the
// other. A direction takes a stage only while it has bytes in flight and
// gives it back once they are delivered, so an idle pair holds nothing but
// its two sockets, and the descriptors and memory in use follow the traffic,
// not the number of pairs (haproxy's model).
//
// Any thread: the relay's one io thread never contends for the lock; the
// client library shares one pool between pumps on whatever threads run the
// application's io_context.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace tlsrelay::pump {

class stage_pool {
public:
  struct pipe_ends {
    int read = -1;
    int write = -1;
    explicit operator bool() const { return read >= 0; }
  };

  // Keeps at most `max_idle` pipes and as many buffers for reuse.
  explicit stage_pool(std::size_t max_idle);
  ~stage_pool();
  stage_pool(const stage_pool&) = delete;
  stage_pool& operator=(const stage_pool&) = delete;

  // An empty pipe, or none when the process is out of descriptors (the
  // caller then copies through a buffer instead).
  pipe_ends take_pipe();
  // `empty`: nothing left in the pipe, so it can serve another pair.
  void give_back(pipe_ends pipe, bool empty);

  std::unique_ptr<char[]> take_buffer();
  void give_back(std::unique_ptr<char[]> buffer);
  // Closes the idle pipes (two descriptors each) and returns how many: out of
  // descriptors, a waiting connection matters more than a spare pipe.
  std::size_t release_idle_pipes();

  std::size_t pipes_in_use() const;
  std::size_t buffers_in_use() const;
  std::size_t idle_pipes() const;
  std::uint64_t stages_taken() const;  // since start, both kinds

private:
  mutable std::mutex mutex_;
  std::size_t max_idle_;
  std::vector<pipe_ends> idle_pipes_;
  std::vector<std::unique_ptr<char[]>> idle_buffers_;
  std::size_t pipes_in_use_ = 0;
  std::size_t buffers_in_use_ = 0;
  std::uint64_t stages_taken_ = 0;
};

}  // namespace tlsrelay::pump
