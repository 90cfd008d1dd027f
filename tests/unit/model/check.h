/* Minimal test harness for model/ tests (plain C++, no cmocka: the GPU machine that builds model/ alone
 * has none). CHECK* record a failure with file:line and both values and carry on; test_summary()
 * prints "N passed, M failed" and gives main its exit status. A test that cannot run (fixtures absent)
 * returns TEST_SKIP, which ctest reports as skipped (SKIP_RETURN_CODE 77).
 *
 * Include this header AFTER every torch/ATen header: c10 pulls in glog, whose CHECK and CHECK_EQ
 * (silently, from a system header) replace these; the #undefs below only help when this one comes last. */
#ifndef SAMDA_TESTS_MODEL_CHECK_H
#define SAMDA_TESTS_MODEL_CHECK_H

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <sstream>
#include <string>

namespace samda_test {
inline int &passed() { static int n = 0; return n; }
inline int &failed() { static int n = 0; return n; }
template <typename T> std::string show(const T &v)
{
    std::ostringstream os;
    os << v;
    return os.str();
}
inline std::string show(const std::string &v) { return "\"" + v + "\""; }
inline std::string show(const char *v) { return v ? "\"" + std::string(v) + "\"" : "NULL"; }
inline void fail(const char *file, int line, const std::string &what)
{
    failed()++;
    fprintf(stderr, "%s:%d: FAILED %s\n", file, line, what.c_str());
}
inline int summary()
{
    printf("%d passed, %d failed\n", passed(), failed());
    if (passed() + failed() == 0) {
        printf("no checks ran (was check.h included before a torch header? see check.h)\n");
        return 1;
    }
    return failed() ? 1 : 0;
}
/* Test data folder: SAMDA_FIXTURES (set by ctest: the repository's tests/data unless the build was
 * configured with another -DSAMDA_FIXTURES), else the repository's tests/data as compiled in, else
 * tests/data under the current directory. */
inline std::string fixtures()
{
    const char *e = getenv("SAMDA_FIXTURES");
    if (e && *e) return e;
#if defined(SAMDA_TEST_DATA_DIR)
    return SAMDA_TEST_DATA_DIR;
#elif defined(SAMDA_MODEL_TEST_DIR)
    return SAMDA_MODEL_TEST_DIR "/../../data";
#else
    return "tests/data";
#endif
}
} // namespace samda_test

#define TEST_SKIP 77

#undef CHECK
#undef CHECK_EQ
#undef CHECK_NEAR
#undef CHECK_THROWS

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) samda_test::passed()++;                                                          \
        else samda_test::fail(__FILE__, __LINE__, "CHECK(" #cond ")");                             \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        const auto va_ = (a);                                                                    \
        const auto vb_ = (b);                                                                    \
        if (va_ == vb_) samda_test::passed()++;                                                    \
        else samda_test::fail(__FILE__, __LINE__, "CHECK_EQ(" #a ", " #b "): " +                   \
                                                      samda_test::show(va_) + " != " + samda_test::show(vb_)); \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double va_ = (double)(a), vb_ = (double)(b), tol_ = (double)(tol);                         \
        if (std::fabs(va_ - vb_) <= tol_) samda_test::passed()++;                                  \
        else samda_test::fail(__FILE__, __LINE__, "CHECK_NEAR(" #a ", " #b "): " +                 \
                                                      samda_test::show(va_) + " vs " + samda_test::show(vb_) + \
                                                      " (tolerance " + samda_test::show(tol_) + ")"); \
    } while (0)

/* expr must throw ExcType whose what() contains substr. */
#define CHECK_THROWS(expr, ExcType, substr)                                                        \
    do {                                                                                           \
        std::string got_ = "<no exception>";                                                       \
        bool ok_ = false;                                                                          \
        try {                                                                                      \
            (void)(expr);                                                                          \
        } catch (const ExcType &e_) {                                                              \
            got_ = e_.what();                                                                      \
            ok_ = got_.find(substr) != std::string::npos;                                          \
        } catch (const std::exception &e_) {                                                       \
            got_ = std::string("other exception: ") + e_.what();                                   \
        }                                                                                          \
        if (ok_) samda_test::passed()++;                                                           \
        else samda_test::fail(__FILE__, __LINE__, "CHECK_THROWS(" #expr ", " #ExcType ", " #substr \
                                                  "): got " + got_);                              \
    } while (0)

/* Run a block, turning an unexpected exception into a failure rather than an abort. */
#define RUN(fn)                                                                                    \
    do {                                                                                           \
        try {                                                                                      \
            fn();                                                                                  \
        } catch (const std::exception &e_) {                                                       \
            samda_test::fail(__FILE__, __LINE__, std::string(#fn " threw: ") + e_.what());        \
        }                                                                                          \
    } while (0)

#endif
