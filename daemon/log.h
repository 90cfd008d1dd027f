/* samdad logging: one line per event, level + module + message + key=value fields, to stderr.
 *
 * Under systemd (JOURNAL_STREAM set) lines carry the sd-daemon "<N>" priority prefix and no
 * timestamp, since journald adds both; elsewhere they start with an ISO-8601 UTC timestamp.
 * Nothing here knows DICOM: callers must not pass patient names, IDs or birth dates, and print
 * UIDs only when samda_log_uids() says so.
 *
 * Thread-safety: every function is thread-safe; a line is written with one write(2) so lines
 * from different threads never interleave. */
#ifndef SAMDA_DAEMON_LOG_H
#define SAMDA_DAEMON_LOG_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum samda_log_level { SAMDA_LOG_ERROR = 0, SAMDA_LOG_WARN, SAMDA_LOG_INFO, SAMDA_LOG_DEBUG } samda_log_level;

typedef struct samda_logger {
    int level;        /* least severe level written; changed atomically by reload */
    int log_uids;     /* print UIDs in fields */
    int fd;           /* destination, normally 2 */
    bool journal;     /* sd-daemon priority prefixes, no timestamp */
} samda_logger;

/** Initialise a logger writing to fd at level (detects journald through JOURNAL_STREAM). */
void samda_logger_init(samda_logger *lg, int fd, samda_log_level level);
/** Change the level (SIGHUP reload). Thread-safe. */
void samda_logger_set_level(samda_logger *lg, samda_log_level level);
/** Would a line at level be written? */
bool samda_log_enabled(const samda_logger *lg, samda_log_level level);

/** Write one line: `level=info mod=MOD msg="MSG" FIELDS`. fields is a printf format producing
 *  key=value pairs (may be NULL); values with spaces must be quoted by the caller with
 *  samda_log_quote(). Lines longer than 2 KiB are truncated with "...". */
void samda_log(const samda_logger *lg, samda_log_level level, const char *mod, const char *msg,
               const char *fields, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/** Quote a value for a key=value field: "..." with \" and \\ escaped and control characters
 *  replaced; writes at most size bytes (always terminated). Returns out. */
char *samda_log_quote(char *out, unsigned size, const char *value);

/** A message made fit for a log line without [daemon] log_uids: every object path under data_dir
 *  becomes "[object]" and every UID-like token (digits and dots: 5 or more components, or 3 or
 *  more and 16 characters or more, so never an IPv4 address) becomes "[uid]". With keep_uids, msg itself.
 *  @param data_dir IN: may be NULL.  @param buf OUT: size bytes, used when something is replaced.
 *  @return msg or buf (borrowed). Thread-safety: pure function. */
const char *samda_log_scrub(const char *msg, bool keep_uids, const char *data_dir, char *buf, unsigned size);

/** A gate for a failure that a loop meets on every pass (a full disk, a locked index): the first
 *  one and then at most one per interval go to the log, the rest are counted. Zero-initialised
 *  means open. Thread-safety: lock-free, any number of threads. */
typedef struct samda_log_gate {
    long long next_ms;      /* atomic: the next time a line may pass */
    unsigned suppressed;    /* atomic: lines held back since the last one that passed */
} samda_log_gate;

/** Whether a line may be written now (now_ms, monotonic or wall, always the same clock); when it
 *  may, *suppressed gets the number held back since the last one (to print with it). */
bool samda_log_gate_pass(samda_log_gate *g, long long now_ms, long long interval_ms, unsigned *suppressed);

/** Parse "error|warn|info|debug"; returns -1 if unknown. */
int samda_log_level_parse(const char *s);

#ifdef __cplusplus
}
#endif
#endif
