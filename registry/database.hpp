// The metadata store: one SQLite database file in WAL mode, shared by the
// modules (each owns its tables). Connections are per Database object and
// serialized by a mutex; transactions are RAII.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace cascade::registry {

using SqlValue = std::variant<std::nullptr_t, int64_t, double, std::string>;

class Statement;

class Database {
  public:
    explicit Database(const std::filesystem::path& file);
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    // Runs one or more statements with no parameters and no results.
    void exec(const std::string& sql);

    // Runs a statement with positional parameters (?1, ?2 …), calling `row`
    // for each result row. Returns the number of rows changed.
    using Row = std::vector<SqlValue>;
    int64_t query(const std::string& sql, const std::vector<SqlValue>& params = {},
                  const std::function<void(const Row&)>& row = {});
    std::vector<Row> rows(const std::string& sql, const std::vector<SqlValue>& params = {});
    std::optional<Row> row(const std::string& sql, const std::vector<SqlValue>& params = {});
    int64_t last_insert_rowid();

    // How a commit reaches the disk (WAL mode either way, so every commit is
    // atomic and survives a crash of the daemon):
    // - Full: fsynced before COMMIT returns. For what a client was told is done:
    //   an applied object, a moved tag, a pushed manifest.
    // - Relaxed: written to the WAL without an fsync; the next Full commit or
    //   checkpoint syncs it. Only an OS crash or power loss can lose it, and then
    //   only with every commit after it (the WAL keeps commits in order), so the
    //   state read back is always an earlier one. For a controller's own
    //   progress (replica rows, revision status, build and rollout events),
    //   which recovery derives again from the Full state.
    enum class Durability { Full, Relaxed };

    // Runs `fn` in a BEGIN IMMEDIATE … COMMIT transaction (ROLLBACK on throw).
    // Nested calls on the same thread join the outer transaction, whose
    // durability is Full if any of them asked for it.
    void transaction(const std::function<void()>& fn, Durability durability = Durability::Full);

    // Applies schema statements once per `name` (recorded in a migrations table).
    void migrate(const std::string& name, const std::string& sql);

    // Runs `fn` after the outermost transaction of this thread committed (right
    // away when none is open); dropped when it rolls back. Used to publish
    // events only for changes that are durable.
    void after_commit(std::function<void()> fn);

  private:
    sqlite3* db_ = nullptr;
    std::recursive_mutex mu_;
    int depth_ = 0;
    bool full_ = true;  // the open transaction commits with Durability::Full
    std::vector<std::function<void()>> after_commit_;
};

// Helpers to read typed values from a row.
int64_t as_int(const SqlValue& v);
std::string as_text(const SqlValue& v);
bool is_null(const SqlValue& v);

}  // namespace cascade::registry
