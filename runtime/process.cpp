#include "runtime/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include <cerrno>

#include "oci/error.hpp"
#include "oci/fs.hpp"

extern char** environ;

namespace cascade::runtime {

pid_t spawn_process(const std::vector<std::string>& argv, const SpawnOptions& options) {
    const std::string what = options.what.empty() && !argv.empty() ? argv[0] : options.what;
    if (argv.empty()) throw Error("start " + what + ": no program given");
    // The sources are dup'ed above stdio first, so that a dup2 onto 0..2
    // never clobbers another's source (e.g. stdout_fd == 2 and stderr_fd == 1)
    // and is never a no-op that would keep CLOEXEC.
    const int wanted[3] = {options.stdin_fd, options.stdout_fd, options.stderr_fd};
    fs::Fd sources[3];
    for (int i = 0; i < 3; i++) {
        if (wanted[i] < 0) continue;
        sources[i] = fs::Fd(::fcntl(wanted[i], F_DUPFD_CLOEXEC, 3));
        if (!sources[i]) throw sys_error("start " + what + ": dup fd", std::to_string(i), errno);
    }

    posix_spawn_file_actions_t actions;
    if (int rc = posix_spawn_file_actions_init(&actions); rc != 0)
        throw sys_error("posix_spawn_file_actions_init for", what, rc);
    struct ActionsGuard {
        posix_spawn_file_actions_t* a;
        ~ActionsGuard() { posix_spawn_file_actions_destroy(a); }
    } actions_guard{&actions};
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = sources[i] ? posix_spawn_file_actions_adddup2(&actions, sources[i].get(), i)
                        : posix_spawn_file_actions_addopen(&actions, i, "/dev/null",
                                                           i == 0 ? O_RDONLY : O_WRONLY, 0);
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    if (rc == 0 && !options.cwd.empty())
        rc = posix_spawn_file_actions_addchdir_np(&actions, options.cwd.c_str());
    if (rc != 0) throw sys_error("posix_spawn file actions for", what, rc);

    posix_spawnattr_t attr;
    if (int r = posix_spawnattr_init(&attr); r != 0)
        throw sys_error("posix_spawnattr_init for", what, r);
    struct AttrGuard {
        posix_spawnattr_t* a;
        ~AttrGuard() { posix_spawnattr_destroy(a); }
    } attr_guard{&attr};
    // Default dispositions and the given mask: a daemon that blocks or
    // ignores signals does not pass that on.
    sigset_t all, blocked;
    sigfillset(&all);
    sigemptyset(&blocked);
    for (int sig : options.blocked_signals)
        sigaddset(&blocked, sig);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &blocked);
    short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
    if (options.new_session) flags |= POSIX_SPAWN_SETSID;
    posix_spawnattr_setflags(&attr, flags);

    std::vector<std::string> args = argv;  // posix_spawn wants char* const*
    std::vector<char*> cargv;
    for (auto& a : args)
        cargv.push_back(a.data());
    cargv.push_back(nullptr);
    std::vector<std::string> env_copy;
    std::vector<char*> cenv;
    char** envp = environ;
    if (options.env) {
        env_copy = *options.env;
        for (auto& e : env_copy)
            cenv.push_back(e.data());
        cenv.push_back(nullptr);
        envp = cenv.data();
    }
    const char* program = options.program.empty() ? cargv[0] : options.program.c_str();
    pid_t pid = -1;
    rc = options.path_lookup ? posix_spawnp(&pid, program, &actions, &attr, cargv.data(), envp)
                             : posix_spawn(&pid, program, &actions, &attr, cargv.data(), envp);
    if (rc != 0) throw sys_error("start " + what, "", rc);
    return pid;
}

}  // namespace cascade::runtime
