#include "registry/database.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "oci/error.hpp"
#include "oci/fs.hpp"

namespace cascade::registry {
namespace {

class DatabaseTest : public ::testing::Test {
  protected:
    fs::TempDir tmp;
    std::filesystem::path file = tmp.path() / "state" / "cascade.db";
    Database db{file};

    int64_t count(const std::string& table) {
        return as_int((*db.row("SELECT COUNT(*) FROM " + table))[0]);
    }
};

TEST_F(DatabaseTest, OpensInWalModeWithForeignKeys) {
    EXPECT_EQ(as_text((*db.row("PRAGMA journal_mode"))[0]), "wal");
    EXPECT_EQ(as_int((*db.row("PRAGMA foreign_keys"))[0]), 1);
    EXPECT_TRUE(std::filesystem::exists(file));

    db.exec(
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
        "CREATE TABLE child (parent INTEGER NOT NULL REFERENCES parent(id));");
    EXPECT_THROW(db.query("INSERT INTO child (parent) VALUES (?1)", {int64_t{42}}), Error);
}

TEST_F(DatabaseTest, PositionalParametersAndTypedRows) {
    db.exec("CREATE TABLE t (i INTEGER, r REAL, s TEXT, n TEXT)");
    EXPECT_EQ(db.query("INSERT INTO t VALUES (?1, ?2, ?3, ?4)",
                       {int64_t{7}, 2.5, std::string("it's; DROP TABLE t"), nullptr}),
              1);
    EXPECT_EQ(db.last_insert_rowid(), 1);
    auto r = db.row("SELECT i, r, s, n FROM t WHERE s = ?1", {std::string("it's; DROP TABLE t")});
    ASSERT_TRUE(r);
    EXPECT_EQ(as_int((*r)[0]), 7);
    EXPECT_DOUBLE_EQ(std::get<double>((*r)[1]), 2.5);
    EXPECT_EQ(as_text((*r)[2]), "it's; DROP TABLE t");
    EXPECT_TRUE(is_null((*r)[3]));
    EXPECT_THROW(as_int((*r)[3]), Error);
    EXPECT_FALSE(db.row("SELECT i FROM t WHERE i = ?1", {int64_t{8}}));

    db.query("INSERT INTO t (i) VALUES (?1), (?2)", {int64_t{1}, int64_t{2}});
    EXPECT_EQ(db.rows("SELECT i FROM t ORDER BY i").size(), 3u);
    EXPECT_EQ(db.query("UPDATE t SET s = 'x' WHERE i < ?1", {int64_t{5}}), 2);
    EXPECT_EQ(db.query("SELECT * FROM t"), 0) << "a SELECT changes nothing";
}

TEST_F(DatabaseTest, ErrorsNameTheStatement) {
    try {
        db.query("SELEC nonsense");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("SELEC nonsense"), std::string::npos) << e.what();
    }
    db.exec("CREATE TABLE t (x)");
    EXPECT_THROW(db.query("INSERT INTO t VALUES (?1)", {}), Error) << "missing parameter";
}

TEST_F(DatabaseTest, TransactionCommitsOrRollsBack) {
    db.exec("CREATE TABLE t (x INTEGER)");
    db.transaction([&] { db.query("INSERT INTO t VALUES (1)"); });
    EXPECT_EQ(count("t"), 1);
    EXPECT_THROW(db.transaction([&] {
        db.query("INSERT INTO t VALUES (2)");
        throw Error("boom");
    }),
                 Error);
    EXPECT_EQ(count("t"), 1) << "the failed transaction was rolled back";
}

// The main database file holds `text` (the WAL was checkpointed into it).
bool main_file_holds(const std::filesystem::path& file, const std::string& text) {
    return fs::read_file(file).find(text) != std::string::npos;
}

TEST_F(DatabaseTest, RelaxedTransactionsCommitWithoutAnFsyncAndRestoreFull) {
    db.exec("CREATE TABLE t (x TEXT)");
    int64_t inside = -1;
    db.transaction(
        [&] {
            inside = as_int((*db.row("PRAGMA synchronous"))[0]);
            db.query("INSERT INTO t VALUES ('relaxed-row-7f3a')");
        },
        Database::Durability::Relaxed);
    EXPECT_EQ(inside, 1) << "NORMAL: the WAL is not fsynced at COMMIT";
    EXPECT_EQ(as_int((*db.row("PRAGMA synchronous"))[0]), 2) << "FULL again afterwards";
    EXPECT_FALSE(main_file_holds(file, "relaxed-row-7f3a")) << "still only in the WAL";
    {
        Database other(file);  // committed: another connection (or a restart) sees it
        EXPECT_EQ(as_int((*other.row("SELECT COUNT(*) FROM t"))[0]), 1);
    }
    EXPECT_THROW(db.transaction(
                     [&] {
                         db.query("INSERT INTO t VALUES ('never')");
                         throw Error("boom");
                     },
                     Database::Durability::Relaxed),
                 Error);
    EXPECT_EQ(count("t"), 1);
    EXPECT_EQ(as_int((*db.row("PRAGMA synchronous"))[0]), 2) << "FULL again after a rollback";
}

TEST_F(DatabaseTest, AFullPartInARelaxedTransactionMakesItDurable) {
    db.exec("CREATE TABLE t (x TEXT)");
    db.transaction([&] { db.query("INSERT INTO t VALUES ('plain-relaxed-2c9e')"); },
                   Database::Durability::Relaxed);
    EXPECT_FALSE(main_file_holds(file, "plain-relaxed-2c9e"));
    db.transaction(
        [&] {
            db.query("INSERT INTO t VALUES ('outer-relaxed-5b1d')");
            db.transaction([&] { db.query("INSERT INTO t VALUES ('inner-full-9d4c')"); });
        },
        Database::Durability::Relaxed);
    // The commit was followed by a checkpoint, which syncs the WAL and copies it
    // into the main file: both this transaction and the relaxed one before it.
    EXPECT_TRUE(main_file_holds(file, "inner-full-9d4c"));
    EXPECT_TRUE(main_file_holds(file, "outer-relaxed-5b1d"));
    EXPECT_TRUE(main_file_holds(file, "plain-relaxed-2c9e"));
    EXPECT_EQ(as_int((*db.row("PRAGMA synchronous"))[0]), 2);
}

TEST_F(DatabaseTest, NestedTransactionsJoinTheOuterOne) {
    db.exec("CREATE TABLE t (x INTEGER)");
    EXPECT_THROW(db.transaction([&] {
        db.transaction([&] { db.query("INSERT INTO t VALUES (1)"); });
        db.query("INSERT INTO t VALUES (2)");
        throw Error("outer fails");
    }),
                 Error);
    EXPECT_EQ(count("t"), 0) << "the inner part is undone with the outer transaction";

    db.transaction([&] {
        db.query("INSERT INTO t VALUES (1)");
        try {
            db.transaction([&] {
                db.query("INSERT INTO t VALUES (2)");
                throw Error("inner fails");
            });
        } catch (const Error&) {
        }
        db.query("INSERT INTO t VALUES (3)");
    });
    auto rows = db.rows("SELECT x FROM t ORDER BY x");
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(as_int(rows[0][0]), 1);
    EXPECT_EQ(as_int(rows[1][0]), 3);
}

TEST_F(DatabaseTest, AfterCommitRunsOnlyForCommittedWork) {
    db.exec("CREATE TABLE t (x INTEGER)");
    std::vector<std::string> seen;
    db.after_commit([&] { seen.push_back("immediate"); });
    EXPECT_EQ(seen, std::vector<std::string>{"immediate"});

    db.transaction([&] {
        db.query("INSERT INTO t VALUES (1)");
        db.transaction([&] {
            db.after_commit([&] {
                // Runs after COMMIT: the row is visible from another connection.
                Database other(file);
                seen.push_back("committed " +
                               std::to_string(as_int((*other.row("SELECT COUNT(*) FROM t"))[0])));
            });
        });
        EXPECT_EQ(seen.size(), 1u) << "not before the outer transaction commits";
    });
    EXPECT_EQ(seen.back(), "committed 1");

    EXPECT_THROW(db.transaction([&] {
        db.after_commit([&] { seen.push_back("rolled back"); });
        throw Error("abort");
    }),
                 Error);
    EXPECT_EQ(seen.size(), 2u);
}

TEST_F(DatabaseTest, MigrationsApplyOnce) {
    db.migrate("0001-create", "CREATE TABLE m (x INTEGER); INSERT INTO m VALUES (1);");
    db.migrate("0001-create", "CREATE TABLE m (x INTEGER); INSERT INTO m VALUES (1);");
    EXPECT_EQ(count("m"), 1);
    {
        Database reopened(file);
        reopened.migrate("0001-create", "CREATE TABLE m (x INTEGER);");
        reopened.migrate("0002-more", "INSERT INTO m VALUES (2);");
    }
    EXPECT_EQ(count("m"), 2);
    // A failing migration leaves no trace and can be retried.
    EXPECT_THROW(
        db.migrate("0003-bad", "INSERT INTO m VALUES (3); INSERT INTO nowhere VALUES (1);"), Error);
    EXPECT_EQ(count("m"), 2);
    EXPECT_FALSE(db.row("SELECT 1 FROM schema_migrations WHERE name = '0003-bad'"));
}

TEST_F(DatabaseTest, ConcurrentWritersFromTwoConnections) {
    db.exec("CREATE TABLE counter (n INTEGER); INSERT INTO counter VALUES (0);");
    Database second(file);
    constexpr int kPerThread = 50;
    auto work = [&](Database& d) {
        for (int i = 0; i < kPerThread; i++)
            d.transaction([&] {
                int64_t n = as_int((*d.row("SELECT n FROM counter"))[0]);
                d.query("UPDATE counter SET n = ?1", {n + 1});
            });
    };
    std::thread a([&] { work(db); });
    std::thread b([&] { work(second); });
    std::thread c([&] { work(db); });  // shares a connection with `a`
    a.join();
    b.join();
    c.join();
    EXPECT_EQ(as_int((*db.row("SELECT n FROM counter"))[0]), 3 * kPerThread);
}

}  // namespace
}  // namespace cascade::registry
