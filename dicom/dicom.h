/* samda's DICOM module: the C face of the code that speaks DICOM (C++ over DCMTK 3.6.7 inside).
 *
 * What is here: process set-up (codecs, DCMTK logging), UID checks and generation, header
 * extraction into a plain struct, a C-STORE/C-ECHO SCP that receives each instance into a
 * temporary Part 10 file and hands it to a callback, a C-ECHO SCU, and the tables of the
 * conformance statement. What is not here: storage, SQLite, the daemon. The module reaches
 * them only through the callbacks declared below; it never opens a database or moves a file
 * into the object store itself.
 *
 * Anything not declared in this file is not public API. No C++ type or exception crosses it:
 * every function catches everything and reports a samda_status plus a one-line message in
 * *err (err may be NULL everywhere).
 *
 * Thread-safety (whole header): samda_dicom_init()/samda_dicom_shutdown() must not race with
 * anything else in this module. Every other function is safe to call from several threads at
 * once on different objects; where one object is shared, the function says so.
 *
 * Patient data: header structs carry patient id/name/birth date/sex for the index. Messages put
 * into samda_error never contain them (UIDs appear only where the failure is about that UID). */
#ifndef SAMDA_DICOM_H
#define SAMDA_DICOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dicom_rules.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Sizes: a DICOM value of the given VR plus its terminating NUL (PS3.5 6.2). ---- */
/* (common/dicom_rules.h defines them once for every module.) */
#define SAMDA_DICOM_UID_SIZE SAMDA_VR_UI_SIZE /* UI: at most 64 characters */
#define SAMDA_DICOM_AE_SIZE SAMDA_VR_AE_SIZE  /* AE: at most 16 characters */
#define SAMDA_DICOM_CS_SIZE SAMDA_VR_CS_SIZE  /* CS: 16 */
#define SAMDA_DICOM_SH_SIZE SAMDA_VR_SH_SIZE  /* SH: 16 */
#define SAMDA_DICOM_LO_SIZE SAMDA_VR_LO_SIZE  /* LO: 64 */
#define SAMDA_DICOM_PN_SIZE SAMDA_VR_PN_SIZE  /* PN: 64 per component group, 3 groups and separators, UTF-8 */
#define SAMDA_DICOM_DA_SIZE SAMDA_VR_DA_SIZE  /* DA: YYYYMMDD */
#define SAMDA_DICOM_TM_SIZE SAMDA_VR_TM_SIZE  /* TM: HHMMSS.FFFFFF (padded) */

/* =========================================================================================
 * Process set-up
 * ========================================================================================= */

/** Severity of a DCMTK log line passed to samda_dicom_init_params.log. */
typedef enum samda_dicom_log_level {
    SAMDA_DICOM_LOG_TRACE,
    SAMDA_DICOM_LOG_DEBUG,
    SAMDA_DICOM_LOG_INFO,
    SAMDA_DICOM_LOG_WARN,
    SAMDA_DICOM_LOG_ERROR,
    SAMDA_DICOM_LOG_FATAL
} samda_dicom_log_level;

/** Receives one DCMTK log line. logger: DCMTK's logger name ("dcmtk.dcmnet"); msg: one line
 *  without a newline. Both are borrowed for the duration of the call. Called from whichever
 *  thread DCMTK logs on, possibly several at once: the callback must be thread-safe.
 *  Warning: at SAMDA_DICOM_LOG_DEBUG and below DCMTK dumps data sets, which contain patient data. */
typedef void (*samda_dicom_log_fn)(void *ctx, samda_dicom_log_level level, const char *logger,
                                   const char *msg);

typedef struct samda_dicom_init_params {
    bool debug;             /* false (default): DCMTK logs only FATAL; true: DEBUG and above      */
    samda_dicom_log_fn log; /* NULL (default): DCMTK's own console output at the level above;
                               else every DCMTK line at or above the level goes here instead     */
    void *log_ctx;          /* passed to log                                                      */
} samda_dicom_init_params;

/** Fill *p with the defaults (quiet, no callback). The only correct way to start a params struct. */
void samda_dicom_init_params_init(samda_dicom_init_params *p);

/** Prepare DCMTK for this process: register the JPEG (baseline, extended, lossless), JPEG-LS and
 *  RLE decoders, set DCMTK's log level and destination, turn off reverse DNS lookups of peers, and
 *  make whole-file reads stop after the top-level Pixel Data (DCMTK's dcmStopParsingAfterElement:
 *  garbage some writers leave after it costs seconds to parse; trailing padding is dropped too).
 *  @param p   IN: settings; NULL means the defaults of samda_dicom_init_params_init().
 *  @param err OUT: failure details, may be NULL.
 *  @return SAMDA_OK; SAMDA_ENOMEM/SAMDA_EINTERNAL: DCMTK could not be configured (nothing to undo,
 *          the call may be retried).
 *  Calls nest: each successful call must be matched by one samda_dicom_shutdown(); the settings
 *  of the latest call win. Other functions of this module work without it (headers can be read),
 *  but compressed pixel data cannot be decoded and DCMTK prints warnings to stderr.
 *  Thread-safety: call from one thread, before any other thread uses this module. Process-wide:
 *  also sets SIGPIPE to SIG_IGN the first time a network is opened (DCMTK does this). */
samda_status samda_dicom_init(const samda_dicom_init_params *p, samda_error *err);

/** Undo one samda_dicom_init(); the last one deregisters the codecs and the log callback.
 *  Stop every SCP first. Thread-safety: as samda_dicom_init(). */
void samda_dicom_shutdown(void);

/* =========================================================================================
 * UIDs (PS3.5 9.1)
 * ========================================================================================= */

/** samda_uid_is_valid (common/dicom_rules.h), the one UID rule, under the dicom module's name.
 *  @param uid IN: NUL-terminated; NULL gives false.  Thread-safety: pure function. */
bool samda_dicom_uid_is_valid(const char *uid);

/** Make a new globally unique UID.
 *  @param out  OUT: SAMDA_DICOM_UID_SIZE bytes; receives the UID.
 *  @param root IN: NULL or "": a "2.25." UID (PS3.5 B.2: a random version-4 UUID written as one
 *              decimal integer); else an organisation root, valid per samda_dicom_uid_is_valid()
 *              and at most 40 characters, followed by "." and 20 to 39 random decimal digits
 *              (first digit non-zero), filling up to 64 characters.
 *  @return SAMDA_OK; SAMDA_EINVAL: root invalid or too long (out set to ""); SAMDA_EIO: no
 *          randomness from the kernel (getrandom) (out set to "").
 *  Thread-safety: safe. */
samda_status samda_dicom_uid_generate(char out[SAMDA_DICOM_UID_SIZE], const char *root,
                                      samda_error *err);

/* =========================================================================================
 * Header extraction
 * ========================================================================================= */

/** What samda needs from one instance, read without loading pixel data. Strings are the values
 *  as stored, without padding, converted to UTF-8 when the data set names another character set
 *  and DCMTK can convert it (else left as stored; see text_is_utf8); a value longer than its buffer
 *  is cut at the buffer size (UIDs never are: an over-long UID fails the read). Multi-valued
 *  strings keep DICOM's backslash separator. Absent attributes give "" or 0 with has_* false. */
typedef struct samda_dicom_header {
    /* Patient (for the index only: never log these) */
    char patient_id[SAMDA_DICOM_LO_SIZE];              /* (0010,0020) */
    char patient_name[SAMDA_DICOM_PN_SIZE];            /* (0010,0010) */
    char patient_birth_date[SAMDA_DICOM_DA_SIZE];      /* (0010,0030) */
    char patient_sex[SAMDA_DICOM_CS_SIZE];             /* (0010,0040) */
    /* Identity; the four marked "required" are always valid UIDs after a successful read */
    char study_instance_uid[SAMDA_DICOM_UID_SIZE];     /* (0020,000D) required */
    char series_instance_uid[SAMDA_DICOM_UID_SIZE];    /* (0020,000E) required */
    char sop_instance_uid[SAMDA_DICOM_UID_SIZE];       /* (0008,0018) required */
    char sop_class_uid[SAMDA_DICOM_UID_SIZE];          /* (0008,0016) required */
    char transfer_syntax_uid[SAMDA_DICOM_UID_SIZE];    /* (0002,0010) of the file meta information;
                                                          without meta information, the one detected */
    char frame_of_reference_uid[SAMDA_DICOM_UID_SIZE]; /* (0020,0052), "" if absent */
    /* Study and series */
    char modality[SAMDA_DICOM_CS_SIZE];                /* (0008,0060) */
    char study_date[SAMDA_DICOM_DA_SIZE];              /* (0008,0020) */
    char study_time[SAMDA_DICOM_TM_SIZE];              /* (0008,0030) */
    char accession_number[SAMDA_DICOM_SH_SIZE];        /* (0008,0050) */
    char study_description[SAMDA_DICOM_LO_SIZE];       /* (0008,1030) */
    char series_description[SAMDA_DICOM_LO_SIZE];      /* (0008,103E) */
    char body_part_examined[SAMDA_DICOM_CS_SIZE];      /* (0018,0015) */
    char manufacturer[SAMDA_DICOM_LO_SIZE];            /* (0008,0070) */
    char specific_character_set[SAMDA_DICOM_LO_SIZE];  /* (0008,0005) as stored (before conversion) */
    bool text_is_utf8;      /* true: the strings above are ASCII or UTF-8; false: left as stored  */
    bool has_series_number;
    int series_number;                                 /* (0020,0011) */
    bool has_instance_number;
    int instance_number;                               /* (0020,0013) */
    /* Image pixel module (0 when absent: not every SOP class is an image) */
    unsigned rows;                                     /* (0028,0010) */
    unsigned columns;                                  /* (0028,0011) */
    unsigned bits_allocated;                           /* (0028,0100) */
    unsigned bits_stored;                              /* (0028,0101) */
    unsigned pixel_representation;                     /* (0028,0103) 0 unsigned, 1 signed */
    unsigned samples_per_pixel;                        /* (0028,0002) */
    char photometric_interpretation[SAMDA_DICOM_CS_SIZE]; /* (0028,0004) */
    unsigned number_of_frames;                         /* (0028,0008); 1 when absent */
    bool has_pixel_data;    /* data at or after (7FE0,0010) follows the header (not read) */
    /* Geometry */
    bool has_pixel_spacing;
    double pixel_spacing[2];                           /* (0028,0030) row spacing, column spacing, mm */
    bool has_image_position;
    double image_position[3];                          /* (0020,0032) mm */
    bool has_image_orientation;
    double image_orientation[6];                       /* (0020,0037) row then column direction cosines */
    bool has_slice_thickness;
    double slice_thickness;                            /* (0018,0050) mm */
    /* Values of interest */
    bool has_rescale;                                  /* slope or intercept present */
    double rescale_slope;                              /* (0028,1053); 1 when absent */
    double rescale_intercept;                          /* (0028,1052); 0 when absent */
    bool has_window;
    double window_center;                              /* (0028,1050) first value */
    double window_width;                               /* (0028,1051) first value */
} samda_dicom_header;

/** Read and validate the header of a DICOM file (Part 10 with meta information, or a bare data set
 *  in any uncompressed transfer syntax), stopping before the pixel data.
 *  @param path IN: file to read.  @param out OUT: the header.  @param err OUT: may be NULL.
 *  @return SAMDA_OK: *out complete, the four required UIDs valid;
 *          SAMDA_EINVAL: path or out NULL;
 *          SAMDA_ENOENT: no such file; SAMDA_EIO: it cannot be read (permissions, I/O);
 *          SAMDA_EBADDICOM: not DICOM, truncated inside the header, or a required UID missing
 *            (message "(0020,000D) StudyInstanceUID missing");
 *          SAMDA_EBADUID: a UID (required ones, frame of reference, transfer syntax) fails
 *            samda_dicom_uid_is_valid() (message names the tag);
 *          SAMDA_ENOMEM.
 *  After SAMDA_EBADDICOM for a missing UID and after SAMDA_EBADUID, *out holds everything that was
 *  read (the offending UID as ""); after any other failure *out is zeroed.
 *  A file truncated inside its pixel data reads successfully: pixel data is not loaded.
 *  Thread-safety: safe (no shared state). */
samda_status samda_dicom_read_header(const char *path, samda_dicom_header *out, samda_error *err);

/** As samda_dicom_read_header(), from memory (a whole Part 10 file or a bare data set).
 *  @param data IN: size bytes, borrowed for the call only.  @return as samda_dicom_read_header(),
 *  without SAMDA_ENOENT/SAMDA_EIO. */
samda_status samda_dicom_read_header_mem(const void *data, size_t size, samda_dicom_header *out,
                                         samda_error *err);

/* =========================================================================================
 * Intake check (dicom/intake.cpp): what must hold before an instance is acknowledged
 * ========================================================================================= */

#define SAMDA_DICOM_MAX_FRAME_BYTES (1u << 30)   /* one frame, decoded: 1 GiB */
#define SAMDA_DICOM_MAX_PIXEL_SPACING_MM 1000.0  /* PixelSpacing values: above 0, at most this */
#define SAMDA_DICOM_MAX_COORDINATE_MM 1e5        /* |ImagePositionPatient| values: at most 100 m */
#define SAMDA_DICOM_MAX_SLICE_GAP_MM 100.0       /* a volume's median slice gap: at most this */

/** Check that a received instance can be read back whole and describes a possible image, before
 *  it is acknowledged. Refused (SAMDA_EBADDICOM, the message naming the attribute first):
 *  a data set that does not parse to its end (truncated anywhere, pixel data included; padding
 *  after the top-level Pixel Data is not read); an image storage class without Pixel Data; Rows or
 *  Columns 0, SamplesPerPixel not 1/3/4, BitsAllocated not 1/8/16/32, BitsStored 0 or above
 *  BitsAllocated, NumberOfFrames not a whole number of 1 or more; native pixel data shorter than
 *  Rows x Columns x SamplesPerPixel x BitsAllocated x NumberOfFrames; encapsulated pixel data with
 *  fewer fragments than frames, a Basic or Extended Offset Table that does not count the frames, or
 *  no bytes at all; a frame over SAMDA_DICOM_MAX_FRAME_BYTES; and, at the top level and in every
 *  functional group item, PixelSpacing not in (0, 1000] mm, ImagePositionPatient beyond 1e5 mm,
 *  ImageOrientationPatient whose directions are not unit vectors, SliceThickness below 0,
 *  RescaleSlope 0, or any of them not numbers. Nothing is allocated from a declared count or
 *  length: values over 4 KiB are checked against the file, never read.
 *  @param path IN: the file as received.  @param h IN: its header (samda_dicom_read_header()).
 *  @return SAMDA_OK; SAMDA_EBADDICOM as above; SAMDA_EINVAL: NULL argument; SAMDA_ENOENT/SAMDA_EIO:
 *          the file cannot be read; SAMDA_ENOMEM.  Thread-safety: safe. */
samda_status samda_dicom_check_instance(const char *path, const samda_dicom_header *h, samda_error *err);

/* =========================================================================================
 * What samda accepts (the table behind the SCP and the conformance statement)
 * ========================================================================================= */

/** Whether samda's SCP accepts this storage SOP class UID (Verification is not a storage class).
 *  Thread-safety: pure function. */
bool samda_dicom_sop_class_is_accepted(const char *sop_class_uid);

/** Whether samda's SCP accepts this transfer syntax UID. Thread-safety: pure function. */
bool samda_dicom_transfer_syntax_is_accepted(const char *transfer_syntax_uid);

/** Write the conformance statement's generated tables (SOP classes, transfer syntaxes) as Markdown.
 *  docs/conformance.md holds this output between its GENERATED markers; a unit test compares them.
 *  @param out IN: stream written to (not closed).
 *  @return SAMDA_OK; SAMDA_EINVAL: out NULL; SAMDA_EIO: a write failed.
 *  Thread-safety: safe (the stream is the caller's). */
samda_status samda_dicom_conformance_tables(FILE *out, samda_error *err);

/* =========================================================================================
 * C-STORE / C-ECHO SCP
 * ========================================================================================= */

/** Description of one association, passed to every callback. Borrowed: valid during the call only;
 *  the same association always has the same id and user. */
typedef struct samda_assoc_info {
    uint64_t id;                          /* unique in the process, increasing from 1 */
    char calling_ae[SAMDA_DICOM_AE_SIZE]; /* peer's AE title, without padding */
    char called_ae[SAMDA_DICOM_AE_SIZE];  /* the AE title it asked for */
    char peer_address[64];                /* numeric IPv4 address of the peer */
    void *user;                           /* set by on_association (NULL before and if not set) */
} samda_assoc_info;

/** What on_association decides. */
typedef enum samda_assoc_verdict {
    SAMDA_ASSOC_ACCEPT = 0,             /* go on to presentation context negotiation */
    SAMDA_ASSOC_REJECT_NO_REASON,       /* rejected-permanent, service user, no reason given */
    SAMDA_ASSOC_REJECT_CALLING_AE,      /* rejected-permanent, calling AE title not recognised */
    SAMDA_ASSOC_REJECT_CALLED_AE,       /* rejected-permanent, called AE title not recognised */
    SAMDA_ASSOC_REJECT_BUSY             /* rejected-transient, local limit exceeded (try later) */
} samda_assoc_verdict;

typedef struct samda_assoc_decision {
    samda_assoc_verdict verdict;  /* preset to SAMDA_ASSOC_ACCEPT */
    void *user;                   /* preset to NULL; stored in samda_assoc_info.user for the
                                     association's later callbacks (owned by the caller: free it
                                     in on_association_end at the latest) */
} samda_assoc_decision;

/** How an association ended. */
typedef enum samda_assoc_end {
    SAMDA_ASSOC_RELEASED = 0,     /* orderly A-RELEASE by the peer */
    SAMDA_ASSOC_ABORTED,          /* A-ABORT by the peer, network or protocol error, or
                                     samda_scp_stop() */
    SAMDA_ASSOC_TIMED_OUT,        /* aborted: no whole command within idle_timeout_s, a data set
                                     not whole within message_timeout_s, or dimse_timeout_s */
    SAMDA_ASSOC_REJECTED          /* never established (AE title, limits, on_association) */
} samda_assoc_end;

/** One received instance, handed to on_store. Borrowed: valid during the call only. */
typedef struct samda_store_request {
    const char *path;             /* temporary Part 10 file in temp_dir, with file meta information
                                     and the data set exactly as received (bit-preserving) in the
                                     accepted transfer syntax; NOT fsynced */
    uint64_t file_size;           /* bytes */
    const char *sha256;           /* SHA-256 of the whole file (lower-case hex), computed while it was
                                     written; NULL when unknown */
    const samda_dicom_header *header; /* parsed from path and validated (UIDs), pixel data not read */
    const char *affected_sop_class_uid;    /* from the C-STORE-RQ command */
    const char *affected_sop_instance_uid; /* from the command; equals header->sop_instance_uid */
    const char *transfer_syntax_uid;       /* accepted for this presentation context */
    unsigned message_id;
} samda_store_request;

/** What on_store answers besides its return value. */
typedef struct samda_store_response {
    bool file_taken;     /* preset false; set true when the callback moved/renamed/unlinked
                            req->path. If false, the SCP deletes req->path after the call. */
    unsigned dicom_status; /* preset 0 = derive from the returned status with samda_status_dicom();
                              non-zero overrides it (e.g. 0xB000 for a warning) */
    char message[SAMDA_ERROR_MESSAGE_SIZE]; /* optional: why a failure, one line, no patient data.
                                          The SCP makes the response's ErrorComment (0000,0902) of it
                                          with samda_scp_error_comment(), so the whole message may be
                                          given; without one, samda_status_str() of the status */
} samda_store_response;

/** Failure that the SCP decided itself, reported for logging/audit. Borrowed for the call. */
typedef struct samda_store_failure {
    const char *affected_sop_class_uid;    /* from the command ("" if unknown) */
    const char *affected_sop_instance_uid; /* from the command ("" if unknown) */
    unsigned dicom_status;                 /* the status sent; 0 if no response could be sent */
    const samda_error *error;              /* what went wrong */
} samda_store_failure;

typedef void (*samda_scp_association_fn)(void *ctx, const samda_assoc_info *a,
                                         samda_assoc_decision *out);
typedef samda_status (*samda_scp_store_fn)(void *ctx, const samda_assoc_info *a,
                                           const samda_store_request *req,
                                           samda_store_response *resp);
typedef void (*samda_scp_store_failed_fn)(void *ctx, const samda_assoc_info *a,
                                          const samda_store_failure *f);
typedef void (*samda_scp_association_end_fn)(void *ctx, const samda_assoc_info *a,
                                             samda_assoc_end how, unsigned n_stored,
                                             unsigned n_failed);
/** An association-level decision the SCP takes itself, for the log (one call per event):
 *  what is "association rejected" (max_associations or max_associations_per_peer reached),
 *  "association aborted" (a deadline passed, or the peer broke the protocol: a command that cannot
 *  be read, an unsupported command, a data set PDV out of place) or, with TLS, "TLS handshake
 *  failed" (no client certificate, one no trusted CA signed, no common protocol or suite, not TLS;
 *  a->id is 0 and the AE titles empty: no association exists yet, only a->peer_address);
 *  reason names the cause and the limit in one line, without patient data or UIDs. Both strings
 *  are borrowed for the call. Runs on the association's thread, on the listener thread for
 *  rejections, or on the connection's handshake thread. */
typedef void (*samda_scp_event_fn)(void *ctx, const samda_assoc_info *a, const char *what,
                                   const char *reason);

typedef struct samda_dicom_tls samda_dicom_tls; /* DICOM TLS settings, see the TLS section */

typedef struct samda_scp_params {
    const char *bind_address;      /* IPv4 address to listen on; default "127.0.0.1";
                                      "0.0.0.0" for every interface */
    unsigned port;                 /* default 11112; 0 = any free port (see samda_scp_port()) */
    const char *const *called_ae_titles; /* accepted called AE titles (exact, case-sensitive,
                                      compared without padding); default {"SAMDA"}; copied */
    size_t n_called_ae_titles;     /* default 1; 0 = accept any called AE title */
    unsigned max_associations;     /* concurrent associations, default 16 (1..1024); one more is
                                      rejected-transient, "local limit exceeded" */
    unsigned max_associations_per_peer; /* concurrent associations with the same calling AE title,
                                      default 4 (0 = no limit but max_associations); one more is
                                      rejected-transient, "local limit exceeded", and reported to
                                      on_event */
    unsigned acse_timeout_s;       /* association negotiation and release, default 30 */
    unsigned dimse_timeout_s;      /* between two PDUs of a message being received, default 60 */
    unsigned message_timeout_s;    /* a C-STORE's data set, all its PDVs, must arrive within this
                                      from its command on (a deadline, not restarted by each PDU),
                                      default 300; else the association is aborted, nothing is kept
                                      and on_event says why */
    unsigned idle_timeout_s;       /* from the end of one message until the next command has
                                      arrived whole, default 300; then abort */
    unsigned max_pdu_bytes;        /* maximum PDU we receive, default 65536 (4096..131072) */
    bool tcp_nodelay;              /* default true: disable Nagle on accepted connections */
    const char *temp_dir;          /* required: directory for received files (same file system as the
                                      store, so the callback can rename); copied */
    void *ctx;                     /* passed to every callback */
    samda_scp_association_fn on_association;     /* NULL = accept every association that passes
                                                    the called AE title and limit checks */
    samda_scp_store_fn on_store;                 /* NULL = answer success and delete the file */
    samda_scp_store_failed_fn on_store_failed;   /* optional */
    samda_scp_association_end_fn on_association_end; /* optional */
    samda_scp_event_fn on_event;                 /* optional: rejections and aborts decided by
                                                    the SCP, for the log */
    const samda_dicom_tls *tls;    /* NULL (default): plain TCP; else DICOM TLS only on this port
                                      (TLS 1.2+, samda_dicom_tls); read during samda_scp_start() */
} samda_scp_params;

/** Counters since samda_scp_start(); all monotonic except associations_active. */
typedef struct samda_scp_counters {
    uint64_t associations_accepted;
    uint64_t associations_rejected;  /* by AE title, limits or on_association */
    uint64_t associations_aborted;   /* aborted or timed out after acceptance */
    uint64_t associations_active;    /* now */
    uint64_t echo_requests;
    uint64_t stores_ok;              /* on_store answered success (or warning) */
    uint64_t stores_failed;          /* any failure response or a receive error */
    uint64_t bytes_received;         /* sizes of the temporary files written */
} samda_scp_counters;

typedef struct samda_scp samda_scp;

/** Fill *p with the defaults listed beside each field. The only correct way to start a params. */
void samda_scp_params_init(samda_scp_params *p);

/** Make an error message fit for a C-STORE response's ErrorComment (0000,0902), which the peer
 *  shows and logs: local paths (words starting with "/", "./" or "~", or holding two "/" or more)
 *  are left out, backslashes and control characters replaced, and when the rest is longer than an
 *  LO (64 characters) UIDs are left out first, then the end is cut; so the cause, said first,
 *  survives. Every failure response the SCP sends carries such a comment.
 *  @param out  OUT: size bytes, always terminated.  @param msg IN: NULL is taken as "".
 *  @return out.  Thread-safety: pure function. */
char *samda_scp_error_comment(char *out, size_t size, const char *msg);

/** Start listening and serving associations (returns once the socket listens).
 *  Threads: one listener thread plus one thread per association (at most max_associations).
 *  Callback concurrency: on_association, on_store, on_store_failed, on_event and
 *  on_association_end run on the association's own thread, so callbacks for DIFFERENT associations
 *  run concurrently (on_store of several associations at once included) and must be thread-safe;
 *  for ONE association they run one after the other, in order (on_association, on_store...,
 *  on_association_end). An association rejected for a limit gets its on_event and
 *  on_association_end on the listener thread.
 *  Messages the SCP answers itself (on_store not called, on_store_failed told): a C-STORE-RQ
 *  whose command DCMTK refuses (Affected SOP Class or Instance UID missing, empty or over 64
 *  characters, no Priority, no data set) but which has a Message ID, and a data set with an
 *  odd-length PDV or sent on another presentation context, are answered 0xC000 with an
 *  ErrorComment naming the problem once the data set has arrived (it is discarded), and the
 *  association goes on. A command without a Message ID or CommandField, a command other than
 *  C-ECHO-RQ and C-STORE-RQ, and a command PDV inside a data set abort the association (on_event
 *  says why). Every failure response carries an ErrorComment (at most 64 characters, no local
 *  path) naming the cause.
 *  on_association_end is called exactly once for every incoming association, including rejected
 *  ones (how = SAMDA_ASSOC_REJECTED, on_association perhaps never called).
 *  Callbacks must not call samda_scp_stop() on their own SCP.
 *  @param p   IN: copied (strings and the AE title list included).  @param err OUT: may be NULL.
 *  @return the SCP, or NULL with *err: SAMDA_EINVAL (NULL params, no temp_dir, bad AE title, bad
 *          limit or address), SAMDA_ENOENT (temp_dir missing), SAMDA_ENETWORK (bind/listen failed,
 *          e.g. port in use: message says which), SAMDA_ENOMEM, SAMDA_EINTERNAL. On failure no
 *          thread was started and no callback will run.
 *  Ownership: caller owns the result; release it with samda_scp_stop().
 *  Thread-safety: safe; several SCPs may run in one process (different ports). */
samda_scp *samda_scp_start(const samda_scp_params *p, samda_error *err);

/** The TCP port the SCP listens on (the real one when params.port was 0). Thread-safety: safe. */
unsigned samda_scp_port(const samda_scp *scp);

/** Copy the counters. Thread-safety: safe while the SCP runs (values read atomically one by one). */
void samda_scp_counters_get(const samda_scp *scp, samda_scp_counters *out);

/** Stop and free: stop accepting (the port is closed at once), let running associations finish for
 *  up to grace_ms, then abort the rest (A-ABORT; their on_association_end says ABORTED), wait for
 *  every thread and free everything. Temporary files of unfinished transfers are deleted.
 *  @param scp  IN: from samda_scp_start(); NULL is a no-op.  @param grace_ms IN: 0 = abort at once.
 *  Thread-safety: call once, not from a callback of this SCP. */
void samda_scp_stop(samda_scp *scp, unsigned grace_ms);

/* =========================================================================================
 * C-ECHO SCU
 * ========================================================================================= */

/** A remote DICOM application entity. */
typedef struct samda_dicom_peer {
    const char *calling_ae;  /* our AE title (1..16 characters) */
    const char *called_ae;   /* theirs (1..16 characters) */
    const char *host;        /* name or IPv4 address */
    unsigned port;           /* 1..65535 */
    const samda_dicom_tls *tls; /* NULL: plain TCP; else DICOM TLS, server certificate verified */
} samda_dicom_peer;

/** Verify a peer with C-ECHO: connect, associate (Verification, Implicit VR Little Endian), echo,
 *  release.
 *  @param peer      IN: borrowed for the call.
 *  @param timeout_s IN: limit for the TCP connection, association and response (each); 0 = 30.
 *  @return SAMDA_OK: the peer answered Success;
 *          SAMDA_EINVAL: peer fields missing or out of range;
 *          SAMDA_ENETWORK: host unknown, connection refused or reset (message says which), or the
 *            peer answered the echo with a non-success status (message gives it in hex);
 *          SAMDA_ETIMEDOUT: no connection or no answer within timeout_s;
 *          SAMDA_EFORBIDDEN: association rejected permanently (message gives the reason: calling
 *            or called AE title not recognised, no reason...);
 *          SAMDA_EBUSY: association rejected transiently (peer busy);
 *          SAMDA_ENOTSUP: the peer accepted the association but not Verification;
 *          SAMDA_ENOMEM, SAMDA_EINTERNAL.
 *  Thread-safety: safe. The TCP connect timeout is a DCMTK process-wide setting: concurrent calls
 *  with different timeout_s may connect with each other's timeout. */
samda_status samda_dicom_echo(const samda_dicom_peer *peer, unsigned timeout_s, samda_error *err);

/* =========================================================================================
 * Series -> volume (dicom/volume.cpp)
 *
 * A volume is the decoded pixels of one series as float32 physical values (stored value *
 * RescaleSlope + RescaleIntercept), one slice per frame, sorted along the slice normal (the cross
 * product of the row and column direction cosines) by the projection of ImagePositionPatient on
 * it, never by InstanceNumber. Multi-frame instances (enhanced CT/MR) are split into their frames,
 * each with its own position from the functional groups.
 *
 * Refused (SAMDA_EBADDICOM, the message naming the attribute first, then the instance by its
 * InstanceNumber and SOP Instance UID, never by path): frames that differ in orientation (beyond
 * orientation_tolerance), rows/columns, pixel spacing, series, patient (PatientID), SOP class or
 * modality, or frame of reference; two frames at the same position (duplicates); frames without
 * ImagePositionPatient/ImageOrientationPatient in a series of several instances (one instance
 * without positions, a single image or a cine, loads in frame order with has_geometry false);
 * pixel data that does not hold NumberOfFrames frames (checked before anything is sized by it, as
 * samda_dicom_check_instance() does; NumberOfFrames x Rows x Columns over max_voxels is
 * SAMDA_ETOOBIG); values no patient can have (PixelSpacing not in (0, 1000] mm, positions beyond
 * 1e5 mm, RescaleSlope 0, non-numbers) and a median slice gap over SAMDA_DICOM_MAX_SLICE_GAP_MM.
 * Refused as SAMDA_ENOTSUP: colour images (RGB, YBR, PALETTE COLOR; SamplesPerPixel > 1) and
 * pixel data this DCMTK build cannot decode (JPEG 2000, HTJ2K, MPEG...), the message naming the
 * transfer syntax. Decoding runs on up to 8 threads (one file each), a frame at a time; 8, 16 and
 * 32 bits allocated, little or big endian.
 * Accepted and reported, not refused: non-uniform spacing (a series with a gap or a missing
 * slice is real data; info.is_uniform and info.max_spacing_deviation_mm say so, and
 * params.refuse_non_uniform makes it a refusal), positions that do not lie on one line along the
 * normal (gantry tilt: info.max_in_plane_offset_mm), MONOCHROME1 (values are NOT inverted: they
 * keep their physical meaning, info.is_monochrome1 tells a display or a model to invert).
 * ========================================================================================= */

typedef struct samda_volume samda_volume;

typedef struct samda_volume_params {
    double orientation_tolerance;  /* largest allowed difference of any direction cosine between
                                      two frames; default 1e-4 */
    double duplicate_tolerance_mm; /* frames closer than this along the normal are duplicates;
                                      default 0.001 mm */
    double spacing_tolerance;      /* a gap differing from the median gap by more than this
                                      fraction of it makes the volume non-uniform; default 0.05
                                      (real series jitter by ~1-2% from rounded positions) */
    bool refuse_non_uniform;       /* default false: report non-uniform spacing in the info;
                                      true: refuse it with SAMDA_EBADDICOM */
    uint64_t max_voxels;           /* refuse larger volumes with SAMDA_ETOOBIG; default 2^30
                                      (4 GiB of float32) */
} samda_volume_params;

/** One slice (one frame of one source instance), in sorted order. */
typedef struct samda_volume_slice {
    char sop_instance_uid[SAMDA_DICOM_UID_SIZE]; /* source instance */
    char sop_class_uid[SAMDA_DICOM_UID_SIZE];    /* its SOP class (for references to it) */
    unsigned frame_number;       /* 1-based frame in a multi-frame instance; 0 for single-frame */
    bool has_instance_number;
    int instance_number;         /* (0020,0013) of the source instance */
    double position[3];          /* ImagePositionPatient of the frame, mm */
    double location_mm;          /* position projected on info.normal (increasing with the index) */
    double rescale_slope;        /* applied to the stored values of this slice */
    double rescale_intercept;
    size_t path_index;           /* index of the source file in the paths given to the load */
} samda_volume_slice;

/** Geometry and identity of a loaded volume. */
typedef struct samda_volume_info {
    size_t n_slices;
    unsigned rows, cols;
    double orientation[6];       /* ImageOrientationPatient: row direction, column direction */
    double normal[3];            /* row x column: the direction in which slices are sorted */
    double pixel_spacing[2];     /* PixelSpacing: between rows, between columns (mm) */
    double slice_spacing;        /* median distance between neighbouring slices along the normal
                                    (mm); for one slice its SliceThickness, else 0 */
    double max_spacing_deviation_mm; /* largest |gap - slice_spacing| over the neighbour pairs */
    bool is_uniform;             /* every gap within spacing_tolerance of slice_spacing */
    double max_in_plane_offset_mm; /* largest distance of a slice position from the line through
                                    slice 0 along the normal (0 unless the gantry was tilted) */
    bool has_geometry;           /* false only for ONE instance whose frames have no position of
                                    their own (a single image, a cine): slices in frame order,
                                    orientation the identity, positions and locations 0 */
    bool has_pixel_spacing;      /* false: PixelSpacing absent, pixel_spacing set to 1\1 */
    bool is_monochrome1;         /* values not inverted (see above) */
    char frame_of_reference_uid[SAMDA_DICOM_UID_SIZE]; /* "" if absent */
    char study_instance_uid[SAMDA_DICOM_UID_SIZE];
    char series_instance_uid[SAMDA_DICOM_UID_SIZE];
    char modality[SAMDA_DICOM_CS_SIZE];
} samda_volume_info;

/** Fill *p with the defaults listed beside each field. */
void samda_volume_params_init(samda_volume_params *p);

/** Load a series: read every file, decode its pixels, check and sort the geometry.
 *  @param paths IN: n files of one series (any order; a multi-frame file counts once).
 *  @param n     IN: 1 or more.
 *  @param p     IN: NULL for the defaults.
 *  @param out   OUT: the volume on success, NULL on failure.
 *  @return SAMDA_OK; SAMDA_EINVAL: no paths, NULL out; SAMDA_ENOENT/SAMDA_EIO: a file cannot be
 *          read (message names it); SAMDA_EBADDICOM: not DICOM, no pixel data, inconsistent or
 *          duplicate geometry (message names the file and its InstanceNumber), non-uniform
 *          spacing when refused; SAMDA_EBADUID: a UID is invalid; SAMDA_ENOTSUP: colour, or
 *          a transfer syntax without a decoder here (JPEG 2000); SAMDA_ETOOBIG: over max_voxels;
 *          SAMDA_ENOMEM. Nothing is allocated after a failure.
 *  Needs samda_dicom_init() for compressed transfer syntaxes.
 *  Ownership: paths are read during the call only; caller owns *out, free with
 *  samda_volume_free().  Thread-safety: safe. */
samda_status samda_dicom_volume_load(const char *const *paths, size_t n, const samda_volume_params *p,
                                     samda_volume **out, samda_error *err);

/* The accessors below return NULL for a NULL volume. Thread-safety: a volume is read-only after
 * samda_dicom_volume_load(): any number of threads may use them at once. */

/** Geometry and identity. Borrowed: valid until samda_volume_free(v). */
const samda_volume_info *samda_volume_get_info(const samda_volume *v);

/** The voxels: n_slices * rows * cols float32, slice-major, then row-major within a slice
 *  (voxel (s, r, c) at [(s * rows + r) * cols + c]). Borrowed: valid until samda_volume_free(v). */
const float *samda_volume_voxels(const samda_volume *v);

/** Slice i (0 <= i < n_slices) in sorted order; NULL when out of range.
 *  Borrowed: valid until samda_volume_free(v). */
const samda_volume_slice *samda_volume_slice_get(const samda_volume *v, size_t i);

/** Header of the source instance of slice 0, for copying patient/study data (contains patient
 *  data: never log it). Borrowed: valid until samda_volume_free(v). */
const samda_dicom_header *samda_volume_source_header(const samda_volume *v);

/** Free a volume; NULL is a no-op. */
void samda_volume_free(samda_volume *v);

/* =========================================================================================
 * CT series writer (dicom/ct_write.cpp): a synthetic or processed int16 HU volume as a
 * standard CT Image Storage series, one Part 10 file per slice.
 * ========================================================================================= */

typedef struct samda_ct_series_params {
    const char *dir;             /* required: existing directory; files IMG00001.dcm, ... in
                                    slice order; existing files of those names are replaced */
    const int16_t *hu;           /* required: n_slices * rows * cols Hounsfield units, slice-major,
                                    row-major within a slice; borrowed for the call */
    size_t n_slices;             /* 1..99999 */
    unsigned rows, cols;         /* 1..65535 */
    double pixel_spacing[2];     /* between rows, between columns (mm); default 1, 1 */
    double slice_spacing;        /* distance between slice positions along the normal (mm, > 0);
                                    default 1 */
    double slice_thickness;      /* mm; default 0 = slice_spacing */
    double origin[3];            /* ImagePositionPatient of slice 0 (mm); default 0, 0, 0 */
    double orientation[6];       /* row and column direction cosines; default 1,0,0,0,1,0 (axial) */
    double window_center;        /* default 40 */
    double window_width;         /* default 400 */
    const char *patient_name;    /* each string: NULL or "" = empty (Type 2) unless noted */
    const char *patient_id;
    const char *patient_birth_date;
    const char *patient_sex;
    const char *study_instance_uid;     /* NULL/"" = generated */
    const char *series_instance_uid;    /* NULL/"" = generated */
    const char *frame_of_reference_uid; /* NULL/"" = generated */
    const char *study_id;
    const char *accession_number;
    const char *study_description;
    const char *series_description;
    const char *study_date;      /* YYYYMMDD; NULL = today */
    const char *study_time;      /* HHMMSS; NULL = now */
    int series_number;           /* default 1 */
    const char *manufacturer;    /* default "samda" */
    const char *uid_root;        /* root for generated UIDs; NULL = "2.25." UUID-derived */
    const char *modality;        /* "CT" (default, NULL or "") or "MR" (MR Image Storage) */
    double rescale_slope;        /* default 1: the values are stored as given; else the stored
                                    values, signed, are values * slope (physical = stored * slope) */
    const char *file_prefix;     /* NULL/"" = none: files are PREFIXIMG00001.dcm ([A-Za-z0-9._-]) */
} samda_ct_series_params;

/** What was written. */
typedef struct samda_ct_series_result {
    char study_instance_uid[SAMDA_DICOM_UID_SIZE];
    char series_instance_uid[SAMDA_DICOM_UID_SIZE];
    char frame_of_reference_uid[SAMDA_DICOM_UID_SIZE];
    size_t n_files;
} samda_ct_series_result;

/** Fill *p with the defaults listed beside each field. */
void samda_ct_series_params_init(samda_ct_series_params *p);

/** Write a CT series (CT Image Storage, ImageType DERIVED\SECONDARY\AXIAL, PatientPosition HFS),
 *  or with modality "MR" an MR Image Storage series (DERIVED\SECONDARY\OTHER, ScanningSequence RM).
 *  Encoding: Explicit VR Little Endian, 16 bits; CT: when every value is >= -1024
 *  the stored value is HU + 1024 unsigned with RescaleIntercept -1024, else the HU themselves,
 *  signed, with RescaleIntercept 0 (RescaleSlope 1 both ways: exact). MR: the values, unsigned
 *  when every one is >= 0, without Rescale attributes. A rescale_slope other than 1 (both
 *  modalities): the given values signed, RescaleSlope that slope, RescaleIntercept 0. Slice k is at
 *  origin + k * slice_spacing * (row x column), with SliceLocation its projection on the normal
 *  and InstanceNumber k + 1. Each file is written to a temporary name in dir, fsynced and renamed;
 *  the directory is fsynced at the end.
 *  @param p IN: see the fields.  @param out OUT: may be NULL.
 *  @return SAMDA_OK; SAMDA_EINVAL: a required field missing or out of range, orientation not two
 *          orthogonal unit vectors; SAMDA_EBADUID: a given UID invalid; SAMDA_ENOENT: dir missing;
 *          SAMDA_EIO/SAMDA_ENOSPC: a write failed (files already renamed stay: rewrite the
 *          series to retry; no temporary file is left); SAMDA_ENOMEM.
 *  Thread-safety: safe (different directories). */
samda_status samda_dicom_write_ct_series(const samda_ct_series_params *p, samda_ct_series_result *out,
                                         samda_error *err);

/* =========================================================================================
 * DICOM-SEG writer (dicom/seg_write.cpp): BINARY Segmentation Storage
 * (1.2.840.10008.5.1.4.1.1.66.4) over a loaded source volume, built with DCMTK's dcmseg.
 *
 * The SEG is a new series in the source's study: Patient, General Study, Patient Study and Frame of
 * Reference come from the source (slice 0's file). General/Enhanced General Equipment describe the
 * SEG's maker, samda (PS3.3 C.7.5.2 requires it); the source's equipment (Manufacturer, model,
 * serial, software, institution) is copied into Contributing Equipment as "Acquisition Equipment"
 * (109101, DCM), next to samda as "Processing Equipment" (109102, DCM) with its version. Common Instance Reference lists every source
 * instance. Each frame carries Derivation Image (its source slice; purpose 121322 DCM, derivation
 * 113076 DCM), Plane Position (Patient) of the source slice, Frame Content with Dimension Index
 * Values (segment number, 1-based sorted slice index) and Segment Identification; Pixel Measures
 * and Plane Orientation are shared. Dimensions: ReferencedSegmentNumber then ImagePositionPatient,
 * as dcmqi writes them.
 * Frames are written only for slices where the segment has a voxel. A segment with no voxel at all
 * follows samda_seg_params.empty_segment.
 * ========================================================================================= */

typedef struct samda_seg_writer samda_seg_writer;

/** What to do with a segment whose mask is empty everywhere. */
typedef enum samda_seg_empty_policy {
    SAMDA_SEG_EMPTY_KEEP_ONE_FRAME = 0, /* keep the segment with one all-zero frame on slice 0, so
                                           the segment (and a SEG of only empty segments) stays valid */
    SAMDA_SEG_EMPTY_SKIP                /* leave the segment out (its number is not used) */
} samda_seg_empty_policy;

/** Segment Algorithm Type (0062,0008). */
typedef enum samda_seg_algorithm_type {
    SAMDA_SEG_ALGORITHM_AUTOMATIC = 0,
    SAMDA_SEG_ALGORITHM_SEMIAUTOMATIC,
    SAMDA_SEG_ALGORITHM_MANUAL
} samda_seg_algorithm_type;

/** A coded concept (Code Sequence Macro, PS3.3 8.8). */
typedef struct samda_seg_code {
    const char *value;   /* CodeValue, e.g. "10200004" */
    const char *scheme;  /* CodingSchemeDesignator, e.g. "SCT" */
    const char *meaning; /* CodeMeaning, e.g. "Liver" */
} samda_seg_code;

typedef struct samda_seg_params {
    const char *series_description;  /* default "Segmentation (samda)" */
    int series_number;               /* default 999 */
    int instance_number;             /* default 1 */
    const char *series_instance_uid; /* NULL/"" = generated */
    const char *sop_instance_uid;    /* NULL/"" = generated */
    const char *uid_root;            /* root for generated UIDs; NULL = "2.25." */
    const char *content_label;       /* ContentLabel (CS: upper case, digits, _ and space, <= 16);
                                        default "SEGMENTATION" */
    const char *content_description; /* default NULL = none */
    const char *content_creator_name;/* PN; default "samda^" */
    const char *software_version;    /* default samda's version ("0.1.0") */
    const char *device_serial_number;/* default "0" (DCMTK requires a value) */
    samda_seg_empty_policy empty_segment; /* default SAMDA_SEG_EMPTY_KEEP_ONE_FRAME */
} samda_seg_params;

typedef struct samda_seg_segment {
    const char *label;               /* required: SegmentLabel (LO) */
    const char *description;         /* optional SegmentDescription */
    samda_seg_code category;         /* required: SegmentedPropertyCategoryCode (CID 7150),
                                        default 85756007 SCT "Tissue" */
    samda_seg_code type;             /* required: SegmentedPropertyTypeCode (CID 7151) */
    samda_seg_code region;           /* optional AnatomicRegionSequence (CID 4031); value NULL or ""
                                        (default) = none */
    samda_seg_code region_modifier;  /* optional AnatomicRegionModifierSequence inside it (CID 2),
                                        only with a region; value NULL or "" (default) = none */
    samda_seg_code type_modifier;    /* optional SegmentedPropertyTypeModifierCodeSequence inside the
                                        type's item (e.g. laterality); value NULL or "" (default) = none */
    bool has_color;                  /* default false: no RecommendedDisplayCIELabValue (viewers
                                        pick a colour) */
    uint8_t rgb[3];                  /* sRGB display colour, written as CIELab */
    samda_seg_algorithm_type algorithm_type; /* default AUTOMATIC */
    const char *algorithm_name;      /* required unless MANUAL */
    const char *algorithm_version;   /* default "": "name version" joins the SoftwareVersions of
                                        samda's Contributing Equipment item (SegmentAlgorithmName
                                        stays the bare name) */
} samda_seg_segment;

/** What samda_seg_writer_save() wrote. */
typedef struct samda_seg_save_result {
    char sop_instance_uid[SAMDA_DICOM_UID_SIZE];
    char series_instance_uid[SAMDA_DICOM_UID_SIZE];
    size_t n_frames;                 /* frames written */
    unsigned n_segments;             /* segments in the SEG */
    unsigned n_empty_kept;           /* of which kept with one empty frame */
    unsigned n_empty_skipped;        /* segments left out as empty */
} samda_seg_save_result;

/** Fill *p with the defaults listed beside each field. */
void samda_seg_params_init(samda_seg_params *p);
/** Fill *s with the defaults (category Tissue, AUTOMATIC, no colour); label, type and algorithm
 *  name are left for the caller. */
void samda_seg_segment_init(samda_seg_segment *s);

/** Start a SEG over a source volume.
 *  @param source IN: borrowed; must outlive the writer.  @param p IN: NULL for defaults (copied).
 *  @return the writer, or NULL with *err: SAMDA_EINVAL (NULL source, invalid UIDs or content
 *          label, source without geometry or larger than 65535 rows/columns), SAMDA_EBADUID,
 *          SAMDA_EBADDICOM (source header unreadable again), SAMDA_ENOMEM, SAMDA_EINTERNAL.
 *  Ownership: caller owns the result; free with samda_seg_writer_free().
 *  Thread-safety: one writer must not be used by two threads at once. */
samda_seg_writer *samda_seg_writer_new(const samda_volume *source, const samda_seg_params *p,
                                       samda_error *err);

/** Add one segment with its mask. Frames are written only for slices where the mask has a voxel
 *  (PS3.3 allows omitting empty frames; viewers show nothing there either way); a mask empty
 *  everywhere follows params.empty_segment.
 *  @param s IN: copied.  @param mask IN: n_slices * rows * cols bytes laid out like the source
 *         voxels; non-zero means inside. Copied (packed) during the call.
 *  @param segment_number OUT: may be NULL; the number given (1, 2, ...), 0 if the segment was
 *         skipped as empty.
 *  @return SAMDA_OK; SAMDA_EINVAL: label, codes or algorithm name missing, more than 65535
 *          segments (the writer is unchanged); SAMDA_EINTERNAL: dcmseg refused it (message says
 *          why; the writer must be freed). */
samda_status samda_seg_writer_add_segment(samda_seg_writer *w, const samda_seg_segment *s,
                                          const uint8_t *mask, unsigned *segment_number,
                                          samda_error *err);

/** Write the SEG to path (temporary file in the same directory, fsync, rename, fsync directory).
 *  @param out OUT: may be NULL.
 *  @return SAMDA_OK; SAMDA_EINVAL: no segment in the SEG (nothing written); SAMDA_ENOENT:
 *          directory missing; SAMDA_EIO/SAMDA_ENOSPC: write failed, no file left, safe to retry;
 *          SAMDA_EINTERNAL: dcmseg refused the object (message says why).
 *  The writer may be saved again (same UIDs). */
samda_status samda_seg_writer_save(samda_seg_writer *w, const char *path, samda_seg_save_result *out,
                                   samda_error *err);

/** Free a writer; NULL is a no-op. */
void samda_seg_writer_free(samda_seg_writer *w);

/* =========================================================================================
 * DICOM-SEG reader (dicom/seg_read.cpp): BINARY and FRACTIONAL segmentations, read with dcmdata.
 * ========================================================================================= */

typedef struct samda_seg samda_seg;

typedef struct samda_seg_segment_info {
    unsigned number;                           /* SegmentNumber */
    char label[SAMDA_DICOM_LO_SIZE];
    char description[SAMDA_DICOM_LO_SIZE];
    char category_value[SAMDA_DICOM_LO_SIZE], category_scheme[SAMDA_DICOM_SH_SIZE],
        category_meaning[SAMDA_DICOM_LO_SIZE];
    char type_value[SAMDA_DICOM_LO_SIZE], type_scheme[SAMDA_DICOM_SH_SIZE],
        type_meaning[SAMDA_DICOM_LO_SIZE];
    char algorithm_type[SAMDA_DICOM_CS_SIZE];  /* "AUTOMATIC", "SEMIAUTOMATIC", "MANUAL" */
    char algorithm_name[SAMDA_DICOM_LO_SIZE];
    char region_value[SAMDA_DICOM_LO_SIZE], region_scheme[SAMDA_DICOM_SH_SIZE],
        region_meaning[SAMDA_DICOM_LO_SIZE];   /* AnatomicRegionSequence ("" when absent) */
    char modifier_value[SAMDA_DICOM_LO_SIZE], modifier_scheme[SAMDA_DICOM_SH_SIZE],
        modifier_meaning[SAMDA_DICOM_LO_SIZE]; /* its first AnatomicRegionModifierSequence item */
    char type_modifier_value[SAMDA_DICOM_LO_SIZE], type_modifier_scheme[SAMDA_DICOM_SH_SIZE],
        type_modifier_meaning[SAMDA_DICOM_LO_SIZE]; /* the first SegmentedPropertyTypeModifierCodeSequence
                                                       item of the type ("" when absent) */
    bool has_cielab;
    uint16_t cielab[3];                        /* RecommendedDisplayCIELabValue */
    uint8_t rgb[3];                            /* with has_cielab: cielab as sRGB 0..255 (the inverse of
                                                  what samda_seg_writer_add_segment writes) */
} samda_seg_segment_info;

typedef struct samda_seg_frame_info {
    unsigned segment_number;                   /* ReferencedSegmentNumber */
    char referenced_sop_instance_uid[SAMDA_DICOM_UID_SIZE]; /* from Derivation Image (else "") */
    unsigned referenced_frame_number;          /* 0 when the source is single-frame */
    bool has_position;
    double position[3];                        /* Plane Position (Patient) */
} samda_seg_frame_info;

typedef struct samda_seg_info {
    unsigned rows, cols;
    size_t n_frames;
    size_t n_segments;
    bool is_fractional;                        /* masks: value > MaximumFractionalValue / 2 */
    bool has_orientation;
    double orientation[6];                     /* shared Plane Orientation */
    char sop_instance_uid[SAMDA_DICOM_UID_SIZE];
    char series_instance_uid[SAMDA_DICOM_UID_SIZE];
    char study_instance_uid[SAMDA_DICOM_UID_SIZE];
    char frame_of_reference_uid[SAMDA_DICOM_UID_SIZE];
    char referenced_series_instance_uid[SAMDA_DICOM_UID_SIZE]; /* first of ReferencedSeriesSequence */
} samda_seg_info;

/** Read a DICOM-SEG file (any transfer syntax DCMTK decodes here). Lenient where a file is
 *  readable without guessing: without NumberOfFrames the frame count is what PixelData holds, and
 *  per-frame items beyond it are ignored; Segment Identification may be shared. 
 *  @return SAMDA_OK; SAMDA_EINVAL; SAMDA_ENOENT/SAMDA_EIO; SAMDA_EBADDICOM: not a segmentation,
 *          or inconsistent (frame count, pixel data length, segment numbers); SAMDA_ENOTSUP:
 *          LABELMAP or compressed without decoder; SAMDA_ENOMEM.
 *  Ownership: caller owns *out; free with samda_seg_free().  Thread-safety: safe. */
samda_status samda_seg_read(const char *path, samda_seg **out, samda_error *err);

/** Borrowed accessors, valid until samda_seg_free(); NULL when seg is NULL or i out of range.
 *  Segments are in SegmentSequence order, frames in file order; a frame mask is rows * cols bytes,
 *  0 or 1. Thread-safety: a samda_seg is read-only after samda_seg_read(): any number of threads
 *  may use the accessors at once. */
const samda_seg_info *samda_seg_get_info(const samda_seg *seg);
const samda_seg_segment_info *samda_seg_segment_get(const samda_seg *seg, size_t i);
const samda_seg_frame_info *samda_seg_frame_get(const samda_seg *seg, size_t i);
const uint8_t *samda_seg_frame_mask(const samda_seg *seg, size_t i);

/** Free; NULL is a no-op. */
void samda_seg_free(samda_seg *seg);

/** Paint the segments onto the source volume's grid: labels_out[s][r][c] = segment number of a
 *  frame mapped on slice s whose mask is set there (where segments overlap, the highest number
 *  wins); 0 elsewhere. A frame maps to its slice by the referenced SOP instance (and frame
 *  number), else by its position (within 0.01 mm).
 *  @param labels_out OUT: n_slices * rows * cols bytes.
 *  @param n_mapped OUT: may be NULL; frames mapped.
 *  @return SAMDA_OK; SAMDA_EINVAL: rows/columns differ from the volume, or a segment number
 *          above 255; SAMDA_ENOENT: a frame matches no slice (message gives the frame number;
 *          labels_out is then partly written). */
samda_status samda_seg_to_label_volume(const samda_seg *seg, const samda_volume *source,
                                       uint8_t *labels_out, size_t *n_mapped, samda_error *err);

/* =========================================================================================
 * Contours of a binary slice (dicom/contour.c), for RT Structure Set ROI contours
 * ========================================================================================= */

/** Closed polygons in pixel coordinates: x = column, y = row, pixel (r, c)'s centre at (c, r).
 *  Corners lie on pixel corners (half-integer values), so the polygons filled with the even-odd
 *  rule and sampled at pixel centres give back the mask exactly. */
typedef struct samda_contour_set {
    double *xy;         /* n_points (x, y) pairs */
    size_t n_points;
    size_t *first;      /* n_contours: index of each polygon's first point */
    size_t *count;      /* n_contours: its number of points (4 or more; the last joins the first) */
    size_t n_contours;
} samda_contour_set;

/** Trace the boundary of every 4-connected part of a slice, and of every hole in one, as one
 *  closed polygon each (outer boundaries clockwise on the screen, holes the other way); only the
 *  corners where a boundary turns are kept.
 *  @param mask IN: rows * cols bytes, non-zero inside.  @param out OUT: the polygons (none for an
 *         empty slice).
 *  @return SAMDA_OK; SAMDA_EINVAL: NULL argument or a 0 dimension; SAMDA_ENOMEM (*out empty).
 *  Ownership: release *out with samda_contour_set_clear().  Thread-safety: pure function. */
samda_status samda_contour_trace(const uint8_t *mask, unsigned rows, unsigned cols, samda_contour_set *out,
                                 samda_error *err);

/** Free the arrays of *s and zero it; NULL is a no-op. */
void samda_contour_set_clear(samda_contour_set *s);

/* =========================================================================================
 * RT Structure Set writer (dicom/rtstruct_write.cpp): RT Structure Set Storage
 * (1.2.840.10008.5.1.4.1.1.481.3) over a loaded source volume, one ROI per label.
 *
 * A new series (Modality RTSTRUCT) in the source's study: Patient and General Study copied from
 * the source (slice 0's file), General Equipment samda. Structure Set: the source's frame of
 * reference, study, series and every slice in ContourImageSequence. Per ROI: Structure Set ROI
 * (ROINumber = 1-based index, name, AUTOMATIC, the algorithm), ROI Contour (display colour, one
 * CLOSED_PLANAR contour per boundary of each slice of the mask, traced by samda_contour_trace(),
 * points in patient coordinates LPS mm from the slice's ImagePositionPatient, the shared
 * ImageOrientationPatient and PixelSpacing, its ContourImageSequence naming that slice) and RT
 * ROI Observations (Segmented Property Category Code and RT ROI Identification Code from the
 * label's codes). Approval: UNAPPROVED. An empty mask keeps its ROI without contours.
 * ========================================================================================= */

typedef struct samda_rtstruct_params {
    const char *series_description;  /* default "RT Structure Set (samda)" */
    int series_number;               /* default 998 */
    int instance_number;             /* default 1 */
    const char *series_instance_uid; /* NULL/"" = generated */
    const char *sop_instance_uid;    /* NULL/"" = generated */
    const char *uid_root;            /* root for generated UIDs; NULL = "2.25." */
    const char *label;               /* StructureSetLabel (SH, 1-16 characters); default "SAMDA" */
    const char *description;         /* StructureSetDescription; default NULL = none */
    const char *software_version;    /* default samda's version */
} samda_rtstruct_params;

typedef struct samda_rtstruct_roi {
    const char *name;                /* required: ROIName (LO) */
    samda_seg_code category;         /* required: Segmented Property Category (CID 7150) */
    samda_seg_code type;             /* required: RT ROI Identification Code (CID 7151) */
    samda_seg_code type_modifier;    /* optional, inside the type's item; value NULL/"" = none */
    bool has_color;                  /* default false: ROIDisplayColor 255\0\0 */
    uint8_t rgb[3];
    const char *algorithm_name;      /* ROIGenerationDescription; default "samda" */
    const uint8_t *mask;             /* required: n_slices * rows * cols bytes like the source
                                        voxels, non-zero inside; borrowed for the call */
} samda_rtstruct_roi;

/** What samda_rtstruct_write() wrote. */
typedef struct samda_rtstruct_result {
    char sop_instance_uid[SAMDA_DICOM_UID_SIZE];
    char series_instance_uid[SAMDA_DICOM_UID_SIZE];
    unsigned n_rois;
    size_t n_contours;               /* over every ROI */
    size_t n_points;
} samda_rtstruct_result;

/** Fill *p with the defaults listed beside each field. */
void samda_rtstruct_params_init(samda_rtstruct_params *p);
/** Fill *r with the defaults (category Tissue, no colour); name, type and mask left to the caller. */
void samda_rtstruct_roi_init(samda_rtstruct_roi *r);

/** Write an RT Structure Set for a source volume to path (temporary file, fsync, rename).
 *  @param source IN: borrowed.  @param p IN: NULL for defaults.  @param rois IN: n_rois entries.
 *  @param out OUT: may be NULL.
 *  @return SAMDA_OK; SAMDA_EINVAL: no ROI, an ROI without name, codes or mask, a label that is not
 *          SH, a source without geometry or frame of reference; SAMDA_EBADUID: a given UID
 *          invalid; SAMDA_ENOENT: directory missing; SAMDA_EIO/SAMDA_ENOSPC: write failed, no
 *          file left; SAMDA_ENOMEM; SAMDA_EINTERNAL.
 *  Thread-safety: safe (different paths). */
samda_status samda_rtstruct_write(const samda_volume *source, const samda_rtstruct_params *p,
                                  const samda_rtstruct_roi *rois, size_t n_rois, const char *path,
                                  samda_rtstruct_result *out, samda_error *err);

/* =========================================================================================
 * Measurement Report writer (dicom/sr_write.cpp): Comprehensive 3D SR Storage
 * (1.2.840.10008.5.1.4.1.1.88.34), DCMR TID 1500 built with DCMTK's dcmsr/cmr.
 *
 * A new series (Modality SR) in the source's study, Patient and General Study copied from the
 * source. Content: Imaging Measurement Report, language English, a device observer (samda),
 * procedure reported "Imaging procedure", an Image Library of every source instance, and one
 * Volumetric ROI Measurements group (TID 1411) per label: Tracking Identifier (the label's name)
 * and a new Tracking Unique Identifier, Finding (the label's type code), Finding Site (its region,
 * when it has one), Referenced Segment (the DICOM-SEG instance and segment number), Source series
 * for segmentation, and the measurements: Volume in ml (UCUM "ml": voxels x PixelSpacing x slice
 * spacing) when the slice spacing is known, and for CT the Attenuation Coefficient's Mean and
 * Standard Deviation (population) in UCUM "[hnsf'U]" over the voxels of the mask (none for an
 * empty mask). Current Requested Procedure Evidence lists the DICOM-SEG and the source instances.
 * Completion COMPLETE, verification UNVERIFIED.
 * ========================================================================================= */

typedef struct samda_sr_params {
    const char *series_description;  /* default "Measurements (samda)" */
    int series_number;               /* default 997 */
    int instance_number;             /* default 1 */
    const char *series_instance_uid; /* NULL/"" = generated */
    const char *sop_instance_uid;    /* NULL/"" = generated */
    const char *uid_root;            /* root for generated UIDs; NULL = "2.25." */
    const char *software_version;    /* default samda's version */
    const char *seg_sop_instance_uid;    /* required: the DICOM-SEG the groups reference */
    const char *seg_series_instance_uid; /* required: its series */
} samda_sr_params;

typedef struct samda_sr_group {
    const char *name;                /* required: Tracking Identifier (the label's name) */
    samda_seg_code type;             /* required: Finding */
    samda_seg_code region;           /* optional Finding Site; value NULL/"" = none */
    unsigned segment_number;         /* required: the label's SegmentNumber in the DICOM-SEG (>= 1) */
    const uint8_t *mask;             /* required: n_slices * rows * cols bytes like the source
                                        voxels, non-zero inside; borrowed for the call */
} samda_sr_group;

/** What samda_sr_write() wrote. */
typedef struct samda_sr_result {
    char sop_instance_uid[SAMDA_DICOM_UID_SIZE];
    char series_instance_uid[SAMDA_DICOM_UID_SIZE];
    unsigned n_groups;
    size_t n_measurements;
} samda_sr_result;

/** Fill *p with the defaults listed beside each field. */
void samda_sr_params_init(samda_sr_params *p);

/** Write a TID 1500 Measurement Report for a source volume and its DICOM-SEG to path (temporary
 *  file, fsync, rename).
 *  @param source IN: borrowed; its voxels give the HU statistics.  @param p IN: required (the SEG).
 *  @param groups IN: n_groups entries.  @param out OUT: may be NULL.
 *  @return SAMDA_OK; SAMDA_EINVAL: no group, a group without name, type or mask, segment number
 *          0, no SEG UIDs, a source without geometry; SAMDA_EBADUID: a given UID invalid;
 *          SAMDA_ENOENT: directory missing; SAMDA_EIO/SAMDA_ENOSPC: write failed, no file left;
 *          SAMDA_ENOMEM; SAMDA_EINTERNAL: dcmsr refused the content (message says why).
 *  Thread-safety: safe (different paths). */
samda_status samda_sr_write(const samda_volume *source, const samda_sr_params *p, const samda_sr_group *groups,
                            size_t n_groups, const char *path, samda_sr_result *out, samda_error *err);

/* =========================================================================================
 * DICOM JSON (PS3.18 Annex F.2) for DICOMweb metadata and QIDO results        [dicom/json.cpp]
 * ========================================================================================= */

/** Largest binary value (bytes) written inline as "InlineBinary" (base64). Larger values, pixel data
 *  of any size and encapsulated (compressed) pixel data become a "BulkDataURI", or are left without
 *  a value when no bulk data base URI is given. */
#define SAMDA_DICOM_JSON_INLINE_MAX 1024

/** Write one instance's data set as a DICOM JSON object (PS3.18 F.2), UTF-8.
 *  What is written: every attribute of the data set in tag order, private ones included (with their
 *  VR; UN when the file has no VR for them), sequences nested to any depth. Not written: the file
 *  meta information (group 0002) and group lengths (gggg,0000).
 *  Encoding rules: keys "GGGGEEEE" (upper-case hex); an empty attribute is {"vr":"XX"} alone; an
 *  empty value inside a multi-valued one is null. PN values are objects {"Alphabetic",
 *  "Ideographic", "Phonetic"} with the empty groups left out. IS and DS values are JSON numbers,
 *  re-spelled only as far as JSON demands ("+1" -> 1, ".5" -> 0.5, "1." -> 1, "007" -> 7) so no
 *  digit is lost; a value that is not a number at all ("abc", "NaN") is kept as a JSON string (the
 *  JSON stays valid; PS3.18 has no way to carry it). FL/FD NaN and infinities become null. AT values
 *  are "GGGGEEEE" strings. Text in other character sets is converted to UTF-8 (SpecificCharacterSet
 *  then reads "ISO_IR 192"); bytes that still are not UTF-8 become U+FFFD.
 *  Binary values (OB, OD, OF, OL, OV, OW, UN): at most SAMDA_DICOM_JSON_INLINE_MAX bytes (and not
 *  pixel data): "InlineBinary", little-endian bytes in base64. Otherwise, with bulkdata_uri:
 *  "BulkDataURI" = bulkdata_uri + "/pixeldata" for the top-level Pixel Data (7FE0,0010) (the
 *  DICOMweb instance pixel data resource; frames are served by samda_dicom_frame_read()), else
 *  bulkdata_uri + "/bulkdata/" + the tag path, e.g. "/bulkdata/00091010" at the top level and
 *  "/bulkdata/00081140/0/00091010" inside item 0 (counted from 0) of a sequence. Without
 *  bulkdata_uri such values are written as {"vr":"XX"} with no value.
 *  @param path         IN: Part 10 file (or bare data set) to read.
 *  @param bulkdata_uri IN: base URI (no trailing slash), e.g.
 *                      "http://host/dicomweb/studies/S/series/X/instances/I"; NULL = omit bulk data.
 *  @param json         OUT: one JSON object (no newline at the end).
 *  @return SAMDA_OK; SAMDA_EINVAL: path or json NULL; SAMDA_ENOENT: no such file; SAMDA_EIO;
 *          SAMDA_EBADDICOM: not DICOM or truncated; SAMDA_ENOMEM. *json is NULL after a failure.
 *  Ownership: *json is the caller's, free with free().  Thread-safety: safe. */
samda_status samda_dicom_file_to_json(const char *path, const char *bulkdata_uri, char **json,
                                      samda_error *err);

/** As samda_dicom_file_to_json() for the listed top-level attributes only (QIDO-RS includefield):
 *  attributes of the list that the data set lacks are left out; a listed sequence is written whole.
 *  Binary values are inline when small, else left without a value (no bulk data URIs).
 *  @param tags IN: (group << 16 | element), any order, n entries (n = 0 gives "{}").
 *  Note: samdad answers QIDO from its index; this serves attributes the index does not keep.
 *  @return as samda_dicom_file_to_json(); SAMDA_EINVAL also for tags NULL with n > 0.
 *  Ownership: *json is the caller's, free with free().  Thread-safety: safe. */
samda_status samda_dicom_dataset_json_attrs(const char *path, const uint32_t *tags, size_t n,
                                            char **json, samda_error *err);

/* =========================================================================================
 * Frames for WADO-RS /frames                                                 [dicom/frame.cpp]
 * ========================================================================================= */

/** The layout of the bytes samda_dicom_frame_read() returns. */
typedef struct samda_dicom_frame_info {
    unsigned rows;                  /* (0028,0010) */
    unsigned columns;               /* (0028,0011) */
    unsigned samples_per_pixel;     /* (0028,0002) */
    unsigned bits_allocated;        /* (0028,0100): 1, 8, 16 or 32 */
    unsigned bits_stored;           /* (0028,0101) */
    unsigned pixel_representation;  /* (0028,0103): 0 unsigned, 1 two's complement */
    unsigned number_of_frames;      /* (0028,0008), 1 when absent */
    unsigned planar_configuration;  /* of the returned bytes: always 0 (R,G,B,R,G,B...) */
    char photometric_interpretation[SAMDA_DICOM_CS_SIZE]; /* of the returned bytes: the decoder's
                                       output model, e.g. "RGB" for a JPEG stored as YBR_FULL_422 */
    char transfer_syntax_uid[SAMDA_DICOM_UID_SIZE];       /* of the file */
} samda_dicom_frame_info;

/** Read one frame's pixels as native bytes: uncompressed, little-endian, samples interleaved
 *  (planar configuration 0), rows top to bottom. Compressed files are decoded through DCMTK (JPEG
 *  baseline/extended/lossless, JPEG-LS, RLE; samda_dicom_init() must have registered the codecs).
 *  Size: rows * columns * samples_per_pixel * bits_allocated / 8 bytes; for bits_allocated 1 (a
 *  BINARY segmentation) the frame's bits, packed least significant bit first, re-aligned so the
 *  frame's first pixel is bit 0 of byte 0 (PS3.5 8.1.1 packs frames without byte alignment):
 *  ceil(rows * columns / 8) bytes.
 *  @param path  IN: Part 10 file.  @param frame IN: 1-based frame number.
 *  @param data  OUT: the bytes.  @param size OUT: their count.  @param info OUT: may be NULL.
 *  @return SAMDA_OK; SAMDA_EINVAL: NULL argument; SAMDA_ENOENT: no such file, frame 0 or above
 *          NumberOfFrames (message gives the count), or no pixel data; SAMDA_EIO;
 *          SAMDA_EBADDICOM: not DICOM, inconsistent image attributes, truncated or undecodable
 *          pixel data; SAMDA_ENOTSUP: JPEG 2000 or another encoding without a decoder here;
 *          SAMDA_ENOMEM. After a failure *data is NULL and *size 0.
 *  Ownership: *data is the caller's, free with free().  Thread-safety: safe. */
samda_status samda_dicom_frame_read(const char *path, unsigned frame, void **data, size_t *size,
                                    samda_dicom_frame_info *info, samda_error *err);

/* =========================================================================================
 * C-STORE SCU for the export queue                                             [dicom/scu.cpp]
 * ========================================================================================= */

/** Whether a failed C-STORE response status is worth retrying later (PS3.4 B.2.3, PS3.7 C).
 *    transient: A7xx out of resources; 0110 processing failure; 0213 resource limitation;
 *               FE00 cancel.
 *    permanent: 0111 duplicate SOP instance; 0117 invalid SOP instance; 0122 SOP class not
 *               supported; 0124 not authorised; 0210-0212 (duplicate invocation, unrecognised
 *               operation, mistyped argument); A9xx data set does not match SOP class; Cxxx cannot
 *               understand; any other failure code.
 *  Success (0000) and warnings (0001, 0107, 0116, Bxxx) are not failures: false.
 *  Thread-safety: pure function. */
bool samda_dicom_status_is_transient(unsigned dicom_status);

/** How one samda_dicom_store() call went, as a whole. */
typedef enum samda_store_outcome {
    SAMDA_STORE_ALL_STORED = 0, /* every instance answered success or warning */
    SAMDA_STORE_SOME_FAILED,    /* the association ran to its release; some instances failed:
                                   see each result's is_transient */
    SAMDA_STORE_TRANSIENT,      /* the association could not be made or broke: connection refused,
                                   reset or timed out, rejected-transient (busy), aborted by the
                                   peer mid-way. Instances not reported stored may be sent again. */
    SAMDA_STORE_PERMANENT       /* retrying as is will not help: invalid peer description,
                                   rejected-permanent (AE titles), TLS set-up or handshake failed,
                                   or the peer accepted none of the presentation contexts */
} samda_store_outcome;

/** What happened to one instance. */
typedef struct samda_store_result {
    samda_status status;    /* SAMDA_OK: stored (success or warning response). Else: SAMDA_EBUSY
                               (A7xx, 0213), SAMDA_EEXIST (0111), SAMDA_ENOTSUP (SOP class or
                               transfer syntax not accepted and no way to convert), SAMDA_EBADDICOM
                               (A9xx, Cxxx, or the file cannot be read), SAMDA_EFORBIDDEN (0124),
                               SAMDA_ENETWORK (0110, other failure codes, or the connection broke),
                               SAMDA_ETIMEDOUT, SAMDA_ENOENT/SAMDA_EIO (the file), ... */
    bool responded;         /* a C-STORE response arrived: dicom_status is the peer's */
    unsigned dicom_status;  /* the response status (0 if none arrived) */
    bool is_transient;      /* a failure that a later retry may cure (false when stored) */
    bool transcoded;        /* sent decompressed: the peer did not accept the stored syntax */
    char message[SAMDA_ERROR_MESSAGE_SIZE]; /* one line; the peer's ErrorComment included */
} samda_store_result;

/** Send instances with C-STORE over one association, then release it.
 *  Presentation contexts: one per SOP class with Explicit and Implicit VR Little Endian, plus, for
 *  each other transfer syntax stored, one with that syntax alone (at most 128 contexts; instances
 *  needing more fail with SAMDA_ETOOBIG, not transient: send fewer classes per call). Each instance
 *  goes in its own transfer syntax when accepted, else decoded to an accepted uncompressed one
 *  (JPEG, JPEG-LS, RLE, deflate, big endian: samda_dicom_init() must have registered the codecs);
 *  if that is impossible (JPEG 2000) the instance fails with SAMDA_ENOTSUP.
 *  @param peer      IN: borrowed; peer->tls non-NULL for DICOM TLS.
 *  @param paths     IN: n Part 10 files, sent in this order.
 *  @param timeout_s IN: for the connection, association and each response; 0 = 30.
 *  @param results   OUT: n entries, each filled whatever the outcome.
 *  @param outcome   OUT: may be NULL.
 *  @return SAMDA_OK: every instance stored (outcome ALL_STORED);
 *          SAMDA_EINVAL: bad arguments (nothing sent, outcome PERMANENT);
 *          association failures as samda_dicom_echo() returns them (SAMDA_ENETWORK,
 *          SAMDA_ETIMEDOUT, SAMDA_EBUSY transient; SAMDA_EFORBIDDEN permanent; TLS failures
 *          SAMDA_ECONFIG/SAMDA_EFORBIDDEN), with outcome TRANSIENT or PERMANENT and every
 *          unsent instance's result saying so;
 *          otherwise the status of the first failed instance (outcome SOME_FAILED, or TRANSIENT
 *          when the association broke), *err saying how many failed.
 *  Thread-safety: safe (the TCP connect timeout is process-wide, as for samda_dicom_echo()). */
samda_status samda_dicom_store(const samda_dicom_peer *peer, const char *const *paths, size_t n,
                               unsigned timeout_s, samda_store_result *results,
                               samda_store_outcome *outcome, samda_error *err);

/* =========================================================================================
 * DICOM TLS (PS3.15 B.9, BCP 195 non-downgrading profile; OpenSSL via DCMTK)   [dicom/tls.cpp]
 * ========================================================================================= */

/** TLS settings of an SCP (samda_scp_params.tls) or of a peer we call (samda_dicom_peer.tls).
 *  Protocol: TLS 1.2 or newer only, with DCMTK's "BCP 195 non-downgrading" cipher suites
 *  (ECDHE/DHE with RSA and AES-GCM): certificates must have RSA keys. All files are PEM. */
struct samda_dicom_tls {
    const char *certificate_file;  /* our certificate (chain); required for an SCP; for an SCU
                                      optional (client authentication, needs private_key_file) */
    const char *private_key_file;  /* unencrypted private key matching certificate_file */
    const char *ca_file;           /* trusted CA certificates; at least one of ca_file, ca_dir */
    const char *ca_dir;            /* directory of trusted CA certificates (OpenSSL hash names,
                                      "openssl rehash") */
    bool require_peer_certificate; /* SCP: default true, a client must present a certificate that
                                      a trusted CA signed (else the handshake fails); false: a
                                      presented certificate is still verified. SCU: ignored, the
                                      server's certificate is always verified. Host names are not
                                      compared with the certificate (DCMTK 3.6.7 does not). */
};

/** Fill *t with the defaults: no files, require_peer_certificate true. */
void samda_dicom_tls_init(samda_dicom_tls *t);

/** Check that the files of *t can be loaded and fit together (key matches certificate, CA
 *  readable), as samda_scp_start() and samda_dicom_store() do before any connection.
 *  @param is_server IN: true for an SCP (a certificate is then required).
 *  @return SAMDA_OK; SAMDA_EINVAL: t NULL, no CA, SCP without certificate, key without certificate;
 *          SAMDA_ECONFIG: a file cannot be read or parsed, or the key does not match (message
 *          names the file, never its content); SAMDA_ENOMEM.  Thread-safety: safe. */
samda_status samda_dicom_tls_check(const samda_dicom_tls *t, bool is_server, samda_error *err);

#ifdef __cplusplus
}
#endif
#endif /* SAMDA_DICOM_H */
