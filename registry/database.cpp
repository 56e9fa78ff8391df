#include "registry/database.hpp"

#include <sqlite3.h>

#include <cstdio>
#include <ctime>

#include "oci/error.hpp"
#include "oci/fs.hpp"

namespace cascade::registry {

// A prepared statement, finalized on destruction.
class Statement {
  public:
    Statement(sqlite3* db, const std::string& sql) : db_(db) {
        if (sqlite3_prepare_v2(db, sql.c_str(), static_cast<int>(sql.size()), &stmt_, nullptr) !=
            SQLITE_OK)
            throw Error("sqlite: " + std::string(sqlite3_errmsg(db)) + " in: " + sql);
        if (!stmt_) throw Error("sqlite: empty statement: " + sql);
    }
    ~Statement() { sqlite3_finalize(stmt_); }
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    void bind(const std::vector<SqlValue>& params, const std::string& sql) {
        int expected = sqlite3_bind_parameter_count(stmt_);
        if (expected != static_cast<int>(params.size()))
            throw Error("sqlite: statement takes " + std::to_string(expected) +
                        " parameters but got " + std::to_string(params.size()) + ": " + sql);
        for (size_t i = 0; i < params.size(); i++) {
            int idx = static_cast<int>(i) + 1;
            int rc = std::visit(
                [&](const auto& v) -> int {
                    using T = std::decay_t<decltype(v)>;
                    if constexpr (std::is_same_v<T, std::nullptr_t>)
                        return sqlite3_bind_null(stmt_, idx);
                    else if constexpr (std::is_same_v<T, int64_t>)
                        return sqlite3_bind_int64(stmt_, idx, v);
                    else if constexpr (std::is_same_v<T, double>)
                        return sqlite3_bind_double(stmt_, idx, v);
                    else
                        return sqlite3_bind_text(stmt_, idx, v.data(), static_cast<int>(v.size()),
                                                 SQLITE_TRANSIENT);
                },
                params[i]);
            if (rc != SQLITE_OK)
                throw Error("sqlite: bind parameter " + std::to_string(idx) + ": " +
                            sqlite3_errmsg(db_) + " in: " + sql);
        }
    }

    // Steps once: true when a row is available.
    bool step(const std::string& sql) {
        int rc = sqlite3_step(stmt_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        throw Error("sqlite: " + std::string(sqlite3_errmsg(db_)) + " in: " + sql);
    }

    Database::Row row() const {
        Database::Row out;
        int n = sqlite3_column_count(stmt_);
        out.reserve(static_cast<size_t>(n));
        for (int i = 0; i < n; i++) {
            switch (sqlite3_column_type(stmt_, i)) {
                case SQLITE_INTEGER:
                    out.emplace_back(static_cast<int64_t>(sqlite3_column_int64(stmt_, i)));
                    break;
                case SQLITE_FLOAT:
                    out.emplace_back(sqlite3_column_double(stmt_, i));
                    break;
                case SQLITE_NULL:
                    out.emplace_back(nullptr);
                    break;
                default: {
                    auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, i));
                    int len = sqlite3_column_bytes(stmt_, i);
                    out.emplace_back(p ? std::string(p, static_cast<size_t>(len)) : std::string());
                }
            }
        }
        return out;
    }

    bool readonly() const { return sqlite3_stmt_readonly(stmt_) != 0; }

  private:
    sqlite3* db_;
    sqlite3_stmt* stmt_ = nullptr;
};

Database::Database(const std::filesystem::path& file) {
    if (file.has_parent_path()) fs::make_dirs(file.parent_path());
    int rc = sqlite3_open_v2(file.c_str(), &db_,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                             nullptr);
    if (rc != SQLITE_OK) {
        std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
        sqlite3_close_v2(db_);
        db_ = nullptr;
        throw Error("open database " + file.string() + ": " + msg);
    }
    try {
        // Writers wait for each other instead of failing at once.
        sqlite3_busy_timeout(db_, 30000);
        exec("PRAGMA journal_mode=WAL;");
        exec("PRAGMA foreign_keys=ON;");
        exec("PRAGMA synchronous=FULL;");
        exec(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name TEXT PRIMARY KEY, applied INTEGER NOT NULL);");
    } catch (const Error& e) {
        sqlite3_close_v2(db_);
        db_ = nullptr;
        throw Error("open database " + file.string() + ": " + e.what());
    }
}

Database::~Database() {
    sqlite3_close_v2(db_);
}

void Database::exec(const std::string& sql) {
    std::lock_guard lock(mu_);
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = err ? err : sqlite3_errmsg(db_);
        sqlite3_free(err);
        throw Error("sqlite: " + msg + " in: " + sql);
    }
}

int64_t Database::query(const std::string& sql, const std::vector<SqlValue>& params,
                        const std::function<void(const Row&)>& row) {
    std::lock_guard lock(mu_);
    Statement st(db_, sql);
    st.bind(params, sql);
    while (st.step(sql))
        if (row) row(st.row());
    return st.readonly() ? 0 : static_cast<int64_t>(sqlite3_changes64(db_));
}

std::vector<Database::Row> Database::rows(const std::string& sql,
                                          const std::vector<SqlValue>& params) {
    std::vector<Row> out;
    query(sql, params, [&](const Row& r) { out.push_back(r); });
    return out;
}

std::optional<Database::Row> Database::row(const std::string& sql,
                                           const std::vector<SqlValue>& params) {
    std::optional<Row> out;
    query(sql, params, [&](const Row& r) {
        if (!out) out = r;
    });
    return out;
}

int64_t Database::last_insert_rowid() {
    std::lock_guard lock(mu_);
    return sqlite3_last_insert_rowid(db_);
}

void Database::transaction(const std::function<void()>& fn, Durability durability) {
    std::unique_lock lock(mu_);
    if (depth_ > 0) {
        if (durability == Durability::Full) full_ = true;
        // Joins the outer transaction; a savepoint lets a failure here undo only
        // this part while the caller decides about the rest.
        std::string sp = "nested_" + std::to_string(depth_);
        exec("SAVEPOINT " + sp);
        depth_++;
        try {
            fn();
        } catch (...) {
            depth_--;
            try {
                exec("ROLLBACK TO " + sp);
                exec("RELEASE " + sp);
            } catch (...) {
            }
            throw;
        }
        depth_--;
        exec("RELEASE " + sp);
        return;
    }

    // SQLite takes the safety level only outside a transaction.
    bool relaxed = durability == Durability::Relaxed;
    if (relaxed) exec("PRAGMA synchronous=NORMAL;");
    full_ = !relaxed;
    auto restore = [&] {
        if (!relaxed) return;
        try {
            exec("PRAGMA synchronous=FULL;");
        } catch (...) {
        }
    };
    try {
        exec("BEGIN IMMEDIATE");
    } catch (...) {
        restore();
        throw;
    }
    depth_ = 1;
    try {
        fn();
        exec("COMMIT");
    } catch (...) {
        depth_ = 0;
        after_commit_.clear();
        try {
            exec("ROLLBACK");
        } catch (...) {
        }
        restore();
        throw;
    }
    depth_ = 0;
    restore();
    // A Full part joined a Relaxed transaction: a checkpoint syncs the WAL
    // (and everything before it) now.
    bool checkpoint = relaxed && full_;
    full_ = true;
    if (checkpoint) {
        try {
            exec("PRAGMA wal_checkpoint(PASSIVE);");
        } catch (...) {
            // Committed all the same; the next Full commit syncs the WAL.
        }
    }
    auto hooks = std::move(after_commit_);
    after_commit_.clear();
    lock.unlock();
    for (auto& h : hooks)
        h();
}

void Database::after_commit(std::function<void()> fn) {
    {
        std::lock_guard lock(mu_);
        if (depth_ > 0) {
            after_commit_.push_back(std::move(fn));
            return;
        }
    }
    fn();
}

void Database::migrate(const std::string& name, const std::string& sql) {
    transaction([&] {
        if (row("SELECT 1 FROM schema_migrations WHERE name = ?1", {name})) return;
        exec(sql);
        query("INSERT INTO schema_migrations (name, applied) VALUES (?1, ?2)",
              {name, static_cast<int64_t>(std::time(nullptr))});
    });
}

int64_t as_int(const SqlValue& v) {
    if (auto* i = std::get_if<int64_t>(&v)) return *i;
    if (auto* d = std::get_if<double>(&v)) return static_cast<int64_t>(*d);
    if (auto* s = std::get_if<std::string>(&v)) {
        try {
            size_t used = 0;
            int64_t n = std::stoll(*s, &used);
            if (used == s->size()) return n;
        } catch (const std::exception&) {
        }
        throw Error("database value '" + *s + "' is text where an integer was expected");
    }
    throw Error("database value is NULL where an integer was expected (check is_null first)");
}

std::string as_text(const SqlValue& v) {
    if (auto* s = std::get_if<std::string>(&v)) return *s;
    if (auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
    if (auto* d = std::get_if<double>(&v)) return std::to_string(*d);
    throw Error("database value is NULL where text was expected (check is_null first)");
}

bool is_null(const SqlValue& v) {
    return std::holds_alternative<std::nullptr_t>(v);
}

}  // namespace cascade::registry
