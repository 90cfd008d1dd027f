/* The configuration table: every option of samdad.conf is one row here (section, key, type,
 * default as text, bounds, flags, doc). config.c parses and checks files against it, config_doc.c
 * writes the example file and the effective configuration from it. */
#include <stddef.h>

#include "config_internal.h"


/* Single sections. The order here is the order of the example file. */
const opt config_main_opts[] = {
    {"daemon", "data_dir", T_PATH, O(data_dir), "/var/lib/samda", 0, 0, NULL, NULL, F_RESTART,
     "Index (SQLite), object store and locks. Created with mode 0700 if missing; one samdad per directory."},
    {"daemon", "log_level", T_ENUM, O(log_level), "info", 0, 0, NULL, "error|warn|info|debug", F_LIVE,
     "Least severe level written to stderr (journald keeps it under systemd)."},
    {"daemon", "log_uids", T_BOOL, O(log_uids), "false", 0, 0, NULL, NULL, F_LIVE,
     "Print DICOM UIDs in log lines (debug aid). Patient names and IDs are never logged."},
    {"daemon", "shutdown_timeout", T_DURATION, O(shutdown_timeout_ms), "20s", 1000, 3600000, "1s..1h", NULL, F_LIVE,
     "On SIGTERM, how long running associations and jobs get to finish before they are left resumable."},

    {"dicom", "bind", T_STR, O(dicom_bind), "127.0.0.1", 0, 0, NULL, NULL, F_RESTART,
     "Address of the C-STORE/C-ECHO listener. Use 0.0.0.0 or a LAN address to accept a PACS on the network."},
    {"dicom", "port", T_INT, O(dicom_port), "11112", 1, 65535, NULL, NULL, F_RESTART,
     "TCP port of the DICOM listener."},
    {"dicom", "ae_title", T_AE, O(dicom_ae_title), "SAMDA", 0, 0, NULL, NULL, F_RESTART,
     "Called AE title samdad answers to (sites may add their own with called_ae)."},
    {"dicom", "max_associations", T_INT, O(dicom_max_associations), "16", 1, 512, NULL, NULL, F_RESTART,
     "Concurrent associations; further ones are rejected (transient), so the PACS retries later."},
    {"dicom", "max_associations_per_peer", T_INT, O(dicom_max_associations_per_peer), "4", 0, 512, NULL, NULL,
     F_RESTART,
     "Concurrent associations of one calling AE title; further ones are rejected (transient) and logged, so "
     "that one sender cannot take every slot. 0 = only max_associations applies."},
    {"dicom", "allow_any_peer", T_BOOL, O(dicom_allow_any_peer), "false", 0, 0, NULL, NULL, F_LIVE,
     "Accept any calling AE title. Off: only AE titles of [peer] sections (and their hosts) may send."},
    {"dicom", "acse_timeout", T_DURATION, O(dicom_acse_timeout_ms), "30s", 1000, 600000, "1s..10m", NULL, F_RESTART,
     "Time allowed for association negotiation."},
    {"dicom", "dimse_timeout", T_DURATION, O(dicom_dimse_timeout_ms), "60s", 1000, 3600000, "1s..1h", NULL, F_RESTART,
     "Longest wait for the next PDU of a message being received (and for a destination's answer when "
     "sending); a peer silent for this long is dropped."},
    {"dicom", "message_timeout", T_DURATION, O(dicom_message_timeout_ms), "5m", 1000, 86400000, "1s..24h", NULL,
     F_RESTART,
     "Time allowed for a whole C-STORE data set, all its PDVs, from its command on (a deadline, not restarted "
     "by each PDU): a slower transfer is aborted, nothing of it is kept, and the log names the peer."},
    {"dicom", "idle_timeout", T_DURATION, O(dicom_idle_timeout_ms), "120s", 1000, 3600000, "1s..1h", NULL, F_RESTART,
     "An association whose next command has not arrived whole this long after the previous message is aborted."},
    {"dicom", "max_pdu", T_INT, O(dicom_max_pdu), "65536", 4096, 131072, NULL, NULL, F_RESTART,
     "Largest PDU samdad receives, in bytes."},
    {"dicom", "tls", T_BOOL, O(dicom_tls), "false", 0, 0, NULL, NULL, F_RESTART,
     "DICOM TLS (PS3.15 B.9, BCP 195 non-downgrading profile: TLS 1.2 and 1.3) on the listener: port then speaks "
     "TLS only (2762 is the registered dicom-tls port). One listener, so one set of association limits; a sender "
     "that cannot speak TLS needs a TLS proxy. Needs tls_cert, tls_key and tls_ca_file or tls_ca_dir; certificates "
     "need RSA keys. The files are read at start: a renewed certificate needs a restart."},
    {"dicom", "tls_cert", T_PATH, O(dicom_tls_cert), NULL, 0, 0, NULL, NULL, F_RESTART | F_OPTIONAL,
     "PEM certificate (chain) the listener presents."},
    {"dicom", "tls_key", T_PATH, O(dicom_tls_key), NULL, 0, 0, NULL, NULL, F_RESTART | F_OPTIONAL,
     "PEM private key of tls_cert, unencrypted (protect it with file permissions); must match tls_cert. Its path "
     "is shown by --print-config, its content never."},
    {"dicom", "tls_ca_file", T_PATH, O(dicom_tls_ca_file), NULL, 0, 0, NULL, NULL, F_RESTART | F_OPTIONAL,
     "PEM file of the CA certificates trusted to sign the senders' client certificates."},
    {"dicom", "tls_ca_dir", T_PATH, O(dicom_tls_ca_dir), NULL, 0, 0, NULL, NULL, F_RESTART | F_OPTIONAL,
     "Directory of trusted CA certificates (named by hash: openssl rehash), instead of or beside tls_ca_file."},
    {"dicom", "tls_require_client_cert", T_BOOL, O(dicom_tls_require_client_cert), "true", 0, 0, NULL, NULL,
     F_RESTART,
     "A sender must present a certificate signed by a trusted CA, else its TLS handshake fails (logged). false: "
     "a certificate is verified only when presented (the [peer] allow-list still applies)."},

    {"http", "bind", T_STR, O(http_bind), "127.0.0.1", 0, 0, NULL, NULL, F_RESTART,
     "Address of the REST/DICOMweb listener."},
    {"http", "port", T_INT, O(http_port), "8080", 1, 65535, NULL, NULL, F_RESTART,
     "TCP port of the REST/DICOMweb listener."},
    {"http", "auth", T_BOOL, O(http_auth), "true", 0, 0, NULL, NULL, F_RESTART,
     "Require bearer tokens (samda token create). Turning it off logs a warning at every start."},
    {"http", "threads", T_INT, O(http_threads), "4", 1, 64, NULL, NULL, F_RESTART,
     "HTTP worker threads."},
    {"http", "max_body", T_SIZE, O(http_max_body_bytes), "2GiB", 1024, 0, "1KiB..64GiB", NULL, F_LIVE,
     "Largest request body (STOW uploads are streamed to disk, never held in memory)."},
    {"http", "max_connections", T_INT, O(http_max_connections), "256", 1, 65536, NULL, NULL, F_RESTART,
     "Concurrent HTTP connections."},
    {"http", "timeout", T_DURATION, O(http_timeout_ms), "60s", 1000, 3600000, "1s..1h", NULL, F_RESTART,
     "Idle time after which a connection is closed (a client that sends nothing cannot hold a slot)."},
    {"http", "header_timeout", T_DURATION, O(http_header_timeout_ms), "30s", 1000, 3600000, "1s..1h", NULL, F_RESTART,
     "A request's line and headers must arrive within this time of connecting or of the previous answer, else the connection is closed (a client trickling bytes cannot hold a slot; idle kept-alive connections close after it too)."},
    {"http", "body_timeout", T_DURATION, O(http_body_timeout_ms), "60s", 1000, 3600000, "1s..1h", NULL, F_RESTART,
     "A request body must be complete within this time of its headers, plus one second per body_min_rate bytes received; else the connection is closed (an upload at a fair rate is never cut, a client trickling its body cannot hold a slot)."},
    {"http", "body_min_rate", T_SIZE, O(http_body_min_rate), "1KiB", 1, 1073741824, "1..1GiB", NULL, F_RESTART,
     "Bytes per second that earn an upload one more second beyond body_timeout."},
    {"http", "cors_origin", T_STR, O(http_cors_origin), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "Access-Control-Allow-Origin for browser viewers such as OHIF; empty = no CORS headers."},
    {"http", "public_url", T_STR, O(http_public_url), NULL, 0, 0, NULL, NULL, F_RESTART | F_OPTIONAL,
     "Base of the absolute URLs samdad hands out (STOW-RS RetrieveURL, WADO-RS BulkDataURI) as clients reach it, e.g. https://pacs.example/samda behind a reverse proxy. Empty: the address and port each connection arrived on (never the client's Host header)."},
    {"http", "tls_cert", T_PATH, O(http_tls_cert), NULL, 0, 0, NULL, NULL, F_RESTART | F_OPTIONAL,
     "PEM certificate; with tls_key, the listener speaks HTTPS only."},
    {"http", "tls_key", T_PATH, O(http_tls_key), NULL, 0, 0, NULL, NULL, F_RESTART | F_OPTIONAL | F_SENSITIVE,
     "PEM private key for tls_cert. Never logged or echoed."},

    {"storage", "min_free", T_SIZE, O(storage_min_free_bytes), "2GiB", 0, 0, "0..1TiB", NULL, F_LIVE,
     "Refuse new instances (C-STORE status A700, HTTP 507) while the data directory has less free space."},
    {"storage", "duplicates", T_ENUM, O(storage_duplicates), "ignore", 0, 0, NULL, "ignore|overwrite|reject", F_LIVE,
     "A SOP instance received again: ignore (identical: accepted, nothing changes; changed: refused), overwrite (changed content replaces the stored instance), or reject (every duplicate refused)."},
    {"storage", "quota", T_SIZE, O(storage_quota_bytes), "0", 0, 0, "0..1024TiB", NULL, F_LIVE,
     "Retention: when the stored objects exceed this size, delete what was delivered (source series whose results every destination received, then delivered results), oldest first, until under it. 0: no quota."},
    {"storage", "retention_interval", T_DURATION, O(storage_retention_interval_ms), "1h", 1000, 604800000, "1s..7d", NULL, F_LIVE,
     "How often the retention pass runs (the sites' retain_source and retain_results, and quota); POST /api/v1/retention/run runs it at once."},
    {"storage", "index", T_ENUM, O(storage_index), "sqlite", 0, 0, NULL, "sqlite|postgresql", F_RESTART,
     "Where the index lives: sqlite (index.sqlite3 in data_dir; one samdad) or postgresql (a database that several samdad nodes share; see postgresql)."},
    {"storage", "postgresql", T_STR, O(storage_postgresql), NULL, 0, 0, NULL, NULL, F_RESTART | F_OPTIONAL | F_SENSITIVE,
     "libpq connection string of the index when index = postgresql, e.g. host=db.example dbname=samda user=samda sslmode=verify-full. Keep the password in a passfile (PGPASSFILE) rather than here; never logged or echoed."},
    {"cluster", "node", T_STR, O(cluster_node), NULL, 0, 0, NULL, NULL, F_RESTART | F_OPTIONAL,
     "This samdad's name among the nodes that share one PostgreSQL index ([storage] index = postgresql): 1..64 of A-Z a-z 0-9 . _ -, unique in the cluster. Empty: the host name."},
    {"cluster", "roles", T_LIST, O(cluster_roles), "ingest,worker,export,api", 0, 0, NULL, "ingest|worker|export|api", F_RESTART,
     "What this node does: ingest (the DICOM listener), worker (the model: segmentation, sessions, training), export (sending results to destinations), api (HTTP: REST, DICOMweb, STOW-RS, console). Any node may lead the completion timers."},
    {"cluster", "node_timeout", T_DURATION, O(cluster_node_timeout_ms), "30s", 3000, 3600000, "3s..1h", NULL, F_LIVE,
     "A node whose heartbeat is older than this is dead: the leader aborts its open associations and the cluster view shows it down. Its jobs and export items return after their leases ([scheduler] job_lease; 10 minutes for an export claim)."},
    {"storage", "busy_timeout", T_DURATION, O(storage_busy_timeout_ms), "5s", 100, 600000, "100ms..10m", NULL, F_RESTART,
     "How long a database writer waits for another before reporting busy."},

    {"model", "checkpoint", T_PATH, O(model_checkpoint), NULL, 0, 0, NULL, NULL, F_RESTART | F_OPTIONAL,
     "SAM or MedSAM checkpoint (.pth state dict, as published). Empty: no model, segmentation jobs wait (make run configures the shipped demo model)."},
    {"model", "adapter", T_PATH, O(model_adapter), NULL, 0, 0, NULL, NULL, F_RESTART | F_OPTIONAL,
     "Default decoder adapter (.safetensors) for sites without an active one of their own."},
    {"model", "device", T_STR, O(model_device), "auto", 0, 0, NULL, NULL, F_RESTART,
     "auto (CUDA when present), cpu, or cuda:N."},
    {"model", "convention", T_ENUM, O(model_convention), "sam", 0, 0, NULL, "sam|medsam", F_RESTART,
     "Input convention of the checkpoint's image encoder: sam (longest side scaled, ImageNet mean and std, padded; "
     "official SAM weights and the demo model) or medsam (scaled to a square, min-max to [0, 1]; MedSAM weights). "
     "It must match how the weights were trained: the wrong one loads but segments badly."},
    {"model", "threads", T_INT, O(model_threads), "0", 0, 256, NULL, NULL, F_RESTART,
     "CPU threads for inference; 0 = all online CPUs (libtorch's own default is 1)."},
    {"model", "max_batch", T_INT, O(model_max_batch), "0", 0, 256, NULL, NULL, F_RESTART,
     "Slices per encoder call; 0 = chosen from free device memory."},
    {"model", "cache", T_SIZE, O(model_cache_bytes), "1GiB", 0, 0, "0..256GiB", NULL, F_RESTART,
     "Image-embedding cache (LRU) for interactive prompts and adaptation."},

    {"scheduler", "tick", T_DURATION, O(sched_tick_ms), "1s", 50, 60000, "50ms..1m", NULL, F_LIVE,
     "How often series-completion timers and leases are evaluated."},
    {"scheduler", "job_lease", T_DURATION, O(job_lease_ms), "5m", 5000, 86400000, "5s..1d", NULL, F_LIVE,
     "A running job not heartbeated for this long is taken again (its worker is presumed dead)."},
    {"scheduler", "job_max_attempts", T_INT, O(job_max_attempts), "3", 1, 100, NULL, NULL, F_LIVE,
     "Attempts before a job is failed for good (it can still be retried by hand)."},
    {"scheduler", "export_backoff", T_DURATION, O(export_backoff_base_ms), "1m", 1000, 86400000, "1s..1d", NULL, F_LIVE,
     "First export retry delay; doubles after each transient failure."},
    {"scheduler", "export_backoff_max", T_DURATION, O(export_backoff_max_ms), "1h", 1000, 604800000, "1s..7d", NULL, F_LIVE,
     "Longest export retry delay."},
    {"scheduler", "export_max_attempts", T_INT, O(export_max_attempts), "10", 1, 1000, NULL, NULL, F_LIVE,
     "Export attempts before an item is failed (manual retry remains possible)."},

    {"routing", "mode", T_ENUM, O(route_mode), "first", 0, 0, NULL, "first|all", F_LIVE,
     "Which [rule] sections act on a completed series: first (the first in file order whose match is true) or "
     "all (every one whose match is true, each its own job)."},
    {"routing", "unmatched", T_ENUM, O(route_unmatched), "site", 0, 0, NULL, "site|skip", F_LIVE,
     "A series no rule matches: site (its site's modalities and min_slices decide, as without rules) or skip "
     "(recorded, not segmented)."},
    {"routing", "off_peak", T_STR, O(route_off_peak), "20:00-06:00", 0, 0, NULL, NULL, F_LIVE,
     "Local-time window HH:MM-HH:MM (may span midnight) in which jobs of rules with priority = off-peak start; "
     "outside it they wait."},
};

static const opt site_opts[] = {
    {"site", "called_ae", T_LIST, S(called_ae), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "Called AE titles that select this site (comma separated), e.g. SAMDA_NEURO."},
    {"site", "calling_ae", T_LIST, S(calling_ae), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "Calling AE titles whose studies belong to this site."},
    {"site", "modalities", T_LIST, S(modalities), "CT,MR", 0, 0, NULL, NULL, F_LIVE,
     "Modalities whose completed series become segmentation jobs: CT and/or MR (others are refused)."},
    {"site", "min_slices", T_INT, S(min_slices), "1", 1, 100000, NULL, NULL, F_LIVE,
     "Series with fewer instances are recorded but not segmented."},
    {"site", "series_idle", T_DURATION, S(series_idle_ms), "30s", 100, 86400000, "100ms..1d", NULL, F_LIVE,
     "A series is complete after this long without a new instance (and its associations released)."},
    {"site", "study_idle", T_DURATION, S(study_idle_ms), "120s", 100, 86400000, "100ms..1d", NULL, F_LIVE,
     "A study is complete after this long without a new instance."},
    {"site", "max_wait", T_DURATION, S(max_wait_ms), "1h", 1000, 604800000, "1s..7d", NULL, F_LIVE,
     "A series is forced complete this long after its first instance, even while instances trickle in."},
    {"site", "tta", T_ENUM, S(tta), "off", 0, 0, NULL, "off|episodic|continual", F_LIVE,
     "Test-time adaptation: off, episodic (per study, discarded) or continual (kept as new adapter versions)."},
    {"site", "min_component", T_INT, S(min_component), "20", 0, 100000000, NULL, NULL, F_LIVE,
     "Post-processing: 3-D connected parts of a label smaller than this many voxels are removed."},
    {"site", "largest_component", T_BOOL, S(largest_component), "false", 0, 0, NULL, NULL, F_LIVE,
     "Post-processing: keep only the largest connected part of each label (single organs)."},
    {"site", "destinations", T_LIST, S(destinations), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "Names of [destination] sections that receive this site's DICOM-SEG results."},
    {"site", "outputs", T_LIST, S(outputs), "seg", 0, 0, NULL, "seg|rtstruct|sr", F_LIVE,
     "Result objects made for each segmented series and sent to the destinations: seg (DICOM-SEG), rtstruct "
     "(RT Structure Set: one ROI per label, contours per slice), sr (Comprehensive 3D SR, TID 1500: volume and, "
     "for CT, mean and standard deviation in HU per label, referencing the DICOM-SEG, so sr needs seg). The "
     "DICOM-SEG is always made and kept as the result; without seg it is not sent."},
    {"site", "retain_source", T_DURATION, S(retain_source_ms), "0", 0, 3153600000000LL, "0..100000d", NULL, F_LIVE,
     "Retention: delete a received series this long after every destination received all its results (e.g. 30d). Series without results, or whose results were not all delivered, are kept. 0: keep."},
    {"site", "retain_results", T_DURATION, S(retain_results_ms), "0", 0, 3153600000000LL, "0..100000d", NULL, F_LIVE,
     "Retention: delete a result DICOM-SEG (its series, results row and export items) this long after it was made, once every destination received it. 0: keep."},
};

static const opt peer_opts[] = {
    {"peer", "ae_title", T_AE, P(ae_title), NULL, 0, 0, NULL, NULL, F_LIVE,
     "Calling AE title allowed to send (required)."},
    {"peer", "host", T_STR, P(host), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "If set, the association must come from this IP address."},
    {"peer", "site", T_STR, P(site), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "Site its studies belong to (overrides the AE mappings of [site] sections)."},
};

static const opt dest_opts[] = {
    {"destination", "ae_title", T_AE, D(ae_title), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "Called AE title of the receiving PACS (required for DICOM C-STORE, i.e. without url)."},
    {"destination", "host", T_STR, D(host), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "Host name or address of the receiving PACS (required for DICOM C-STORE, i.e. without url)."},
    {"destination", "port", T_INT, D(port), "104", 1, 65535, NULL, NULL, F_LIVE,
     "DICOM port of the receiving PACS."},
    {"destination", "tls", T_BOOL, D(tls), "false", 0, 0, NULL, NULL, F_LIVE,
     "Send over DICOM TLS (TLS 1.2 and 1.3, BCP 195 suites): the destination's certificate must be signed by "
     "tls_ca_file or tls_ca_dir (host names are not compared), else nothing is sent and the export fails at once "
     "(not retried). Exports and C-ECHO both use it."},
    {"destination", "tls_ca_file", T_PATH, D(tls_ca_file), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "PEM file of the CA certificates trusted to sign the destination's certificate."},
    {"destination", "tls_ca_dir", T_PATH, D(tls_ca_dir), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "Directory of trusted CA certificates (openssl rehash), instead of or beside tls_ca_file."},
    {"destination", "tls_cert", T_PATH, D(tls_cert), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "PEM client certificate samdad presents to the destination (with tls_key); empty: none."},
    {"destination", "tls_key", T_PATH, D(tls_key), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "PEM private key of tls_cert, unencrypted; must match it. Its path is shown, its content never."},
    {"destination", "url", T_STR, D(url), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "STOW-RS instead of C-STORE: the destination's DICOMweb root (http:// or https://), e.g. https://pacs.example.org/dicom-web; results are POSTed to URL/studies. https verifies the server's certificate and host name against tls_ca_file/tls_ca_dir, else the system's CAs. Without ae_title and host."},
    {"destination", "auth", T_ENUM, D(auth), "none", 0, 0, NULL, "none|bearer|basic", F_LIVE,
     "STOW-RS authentication: none, bearer (the token in secret_file) or basic (username and the password in secret_file)."},
    {"destination", "username", T_STR, D(username), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "STOW-RS basic authentication: the user name."},
    {"destination", "secret_file", T_PATH, D(secret_file), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "STOW-RS: a file holding the bearer token or the basic password (one line; readable by samdad only). Read at each send; never logged or shown."},
};

static const opt rule_opts[] = {
    {"rule", "match", T_STR, R(match), NULL, 0, 0, NULL, NULL, F_LIVE,
     "When the rule acts on a completed series (required): an expression over its indexed attributes, e.g. "
     "Modality = CT and SeriesDescription like \"*ART*\" and SliceThickness <= 2.5 (the language: README, "
     "Routing rules). Checked at load; errors name the line and column."},
    {"rule", "site", T_STR, R(site), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "Site whose adapter and settings segment the series; empty: the site its association maps to."},
    {"rule", "labels", T_LIST, R(labels), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "Labels to segment (names of the adapter's labels); empty: all of them."},
    {"rule", "outputs", T_LIST, R(outputs), NULL, 0, 0, NULL, "seg|rtstruct|sr", F_LIVE | F_OPTIONAL,
     "Result objects made and sent (seg, rtstruct, sr); empty: the site's outputs."},
    {"rule", "destinations", T_LIST, R(destinations), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "Names of [destination] sections that receive the results; empty: the site's destinations."},
    {"rule", "priority", T_ENUM, R(priority), "normal", 0, 0, NULL, "normal|urgent|off-peak", F_LIVE,
     "urgent: before other series' work (after interactive requests); normal; off-peak: starts only inside "
     "[routing] off_peak."},
    {"rule", "requires", T_STR, R(requires), NULL, 0, 0, NULL, NULL, F_LIVE | F_OPTIONAL,
     "Study-level trigger: expressions separated by commas outside parentheses and quotes, each of which some "
     "complete series of the same study must match before this rule's job is queued (e.g. SeriesDescription "
     "like \"*ART*\", SeriesDescription like \"*VEN*\"). Until then the series is held."},
    {"rule", "requires_timeout", T_DURATION, R(requires_timeout_ms), "2h", 60000, 604800000, "1m..7d", NULL, F_LIVE,
     "How long a held series waits for the series requires names; then it is not segmented by this rule and "
     "the reason is recorded on it."},
};

/* Repeated sections, in the order of CONFIG_KIND_*. */
const section_kind config_repeated[] = {
    {"site", site_opts, sizeof site_opts / sizeof *site_opts, sizeof(samda_site_cfg), S(name), S(line),
     O(sites), O(n_sites), "A site owns an adapter and its settings. Studies map to it by AE title; unmapped ones belong to [site default], which always exists."},
    {"peer", peer_opts, sizeof peer_opts / sizeof *peer_opts, sizeof(samda_peer_cfg), P(name), P(line),
     O(peers), O(n_peers), "A PACS or modality allowed to send (the calling-AE allow-list)."},
    {"destination", dest_opts, sizeof dest_opts / sizeof *dest_opts, sizeof(samda_dest_cfg), D(name), D(line),
     O(dests), O(n_dests), "A node that receives results: a PACS over DICOM C-STORE, or a DICOMweb server over STOW-RS (url)."},
    {"rule", rule_opts, sizeof rule_opts / sizeof *rule_opts, sizeof(samda_rule_cfg), R(name), R(line),
     O(rules), O(n_rules), "A routing rule: which completed series are segmented, by which site, into what, "
     "for whom, how urgently."},
};
const size_t config_n_main = sizeof config_main_opts / sizeof *config_main_opts;
const size_t config_n_repeated = sizeof config_repeated / sizeof *config_repeated;
_Static_assert(sizeof config_main_opts / sizeof *config_main_opts <= CONFIG_MAIN_MAX, "raise CONFIG_MAIN_MAX");
