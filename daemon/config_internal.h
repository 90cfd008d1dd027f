/* daemon/ internal: the row types of the configuration table and the tables themselves
 * (config_table.c), shared by the parser (config.c) and the documentation writers (config_doc.c).
 * Never included outside daemon/config*.c. */
#ifndef SAMDA_DAEMON_CONFIG_INTERNAL_H
#define SAMDA_DAEMON_CONFIG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef enum { T_STR, T_PATH, T_INT, T_BOOL, T_SIZE, T_DURATION, T_ENUM, T_LIST, T_AE } opt_type;

enum {
    F_RESTART = 1u << 0,   /* takes effect at the next start only */
    F_LIVE = 1u << 1,      /* applied by SIGHUP */
    F_SENSITIVE = 1u << 2, /* never printed */
    F_OPTIONAL = 1u << 3,  /* may be empty (string types) */
};

typedef struct opt {
    const char *section; /* "dicom"; for repeated sections the kind: "site" */
    const char *key;
    opt_type type;
    size_t offset;
    const char *def;    /* default as text; NULL = unset */
    int64_t lo, hi;     /* bounds for INT/DURATION(ms)/SIZE(bytes, via lo_s/hi_s) */
    const char *bounds; /* SIZE/DURATION bounds as text, for messages and docs */
    const char *choices;/* ENUM: "off|episodic|continual" */
    unsigned flags;
    const char *doc;
} opt;

typedef struct section_kind {
    const char *kind;
    const opt *opts;
    size_t n_opts;
    size_t elem_size;
    size_t name_off, line_off;
    size_t arr_off, count_off; /* in samda_config */
    const char *doc;
} section_kind;

/* Where a field lives in samda_config and in the elements of its repeated sections. */
#define O(field) offsetof(samda_config, field)
#define S(field) offsetof(samda_site_cfg, field)
#define P(field) offsetof(samda_peer_cfg, field)
#define D(field) offsetof(samda_dest_cfg, field)
#define R(field) offsetof(samda_rule_cfg, field)

/* The i-th element of a repeated section's array in c. */
static inline void *elem_at(const samda_config *c, const section_kind *k, size_t i)
{
    char *arr = *(char *const *)((const char *)c + k->arr_off);
    return arr + i * k->elem_size;
}

#define CONFIG_MAIN_MAX 96 /* bound on the rows of config_main_opts (checked where it is defined) */

/* Single sections, in the order of the example file. */
extern const opt config_main_opts[];
extern const size_t config_n_main;
/* Repeated sections ([site NAME], [peer NAME], [destination NAME], [rule NAME]). */
enum { CONFIG_KIND_SITE, CONFIG_KIND_PEER, CONFIG_KIND_DEST, CONFIG_KIND_RULE };
extern const section_kind config_repeated[];
extern const size_t config_n_repeated;

#endif
