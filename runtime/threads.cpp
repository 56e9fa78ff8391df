#include "runtime/threads.hpp"

#include <pthread.h>
#include <sched.h>

namespace cascade::runtime {

void set_forwarding_thread(const std::string& name) {
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
    sched_param param{};
    // With pid 0, Linux applies the policy to the calling thread only.
    sched_setscheduler(0, SCHED_BATCH, &param);
}

}  // namespace cascade::runtime
