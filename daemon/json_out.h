/* JSON views of index rows, shared by the REST API and the samda CLI (one shape for both).
 * No patient names or IDs appear in them. Each returns a new reference (NULL on out of memory). */
#ifndef SAMDA_DAEMON_JSON_OUT_H
#define SAMDA_DAEMON_JSON_OUT_H

#include <jansson.h>

#include "config.h"
#include "storage.h"

json_t *samdad_job_json(const samda_job *j);
json_t *samdad_series_json(const samda_series_info *s);
json_t *samdad_result_json(const samda_result *r);
const char *samdad_series_state_name(samda_series_state st);
/** A configuration list as a JSON array of strings (empty for an empty list). */
json_t *samdad_strlist_json(const samda_strlist *l);

#endif
