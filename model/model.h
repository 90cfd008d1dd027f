/* model/model.h: Segment Anything (SAM, MedSAM) in libtorch, behind a C interface.
 *
 * A samda_model holds one SAM network (image encoder, prompt encoder, mask decoder) loaded from an
 * official checkpoint (or seeded random weights for benchmarks). Images are encoded once into a
 * samda_embedding; any number of prompts (points, a box, a previous low-resolution mask) are then
 * decoded against that embedding in one call. A samda_embedding_cache keeps embeddings in an LRU
 * bounded in bytes.
 *
 * Conventions
 *  - Coordinates are (x, y) in pixels of the ORIGINAL image; the model scales them.
 *  - Images are row-major H x W x C (C = 1 or 3), uint8 0..255 or float already windowed to 0..255.
 *  - Every function that can fail returns a samda_status and fills *err (err may be NULL); no C++
 *    exception crosses this interface.
 *
 * Thread-safety: a samda_model is read-only after samda_model_open(): samda_model_encode(),
 * samda_model_decode(), samda_model_preprocess() and the getters may run concurrently on one model.
 * samda_model_open() sets libtorch's process-wide intra-op thread count (the last open wins).
 * Embeddings are immutable and reference counted (retain/release are thread-safe). The cache is
 * thread-safe. Everything else: one thread per object. */
#ifndef SAMDA_MODEL_H
#define SAMDA_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct samda_model samda_model;                     /* opaque; model/model.cpp */
typedef struct samda_embedding samda_embedding;             /* opaque, reference counted */
typedef struct samda_embedding_cache samda_embedding_cache; /* opaque; model/cache.cpp */

#define SAMDA_MODEL_DEVICE_AUTO (-2) /* CUDA device 0 when libtorch sees a GPU, else the CPU */
#define SAMDA_MODEL_DEVICE_CPU  (-1)

typedef enum samda_model_dtype {
    SAMDA_MODEL_DTYPE_FLOAT32 = 0,
    SAMDA_MODEL_DTYPE_FLOAT16 = 1, /* CUDA only */
    SAMDA_MODEL_DTYPE_BFLOAT16 = 2 /* CUDA only */
} samda_model_dtype;

typedef enum samda_model_convention {
    SAMDA_MODEL_CONVENTION_SAM = 0,   /* longest side to S (bilinear, antialiased), ImageNet mean/std, zero pad
                                         bottom/right */
    SAMDA_MODEL_CONVENTION_MEDSAM = 1 /* resize to S x S (bicubic, antialiased), min-max scale to [0, 1] */
} samda_model_convention;

typedef struct samda_model_params {
    const char *checkpoint_path;       /* .pth state dict (torch.save); ignored with random_weights */
    const char *arch;                  /* "auto" (default: inferred from the checkpoint's tensor shapes),
                                          "vit_b", "vit_l", "vit_h", or "custom" (needs config_path) */
    const char *config_path;           /* JSON config (layout of fixtures/sam-parity/tiny/config.json); required
                                          for "custom", and used by "auto" when given; NULL otherwise */
    int device;                        /* SAMDA_MODEL_DEVICE_AUTO (default), SAMDA_MODEL_DEVICE_CPU, or a CUDA
                                          ordinal >= 0 */
    int n_threads;                     /* intra-op CPU threads; 0 (default) = number of online CPUs */
    samda_model_dtype encoder_dtype;   /* image encoder precision; FLOAT32 (default); half types on CUDA only */
    int max_batch;                     /* images per encoder forward; 0 (default) = from free memory on CUDA,
                                          2 on the CPU */
    samda_model_convention convention; /* input convention (default SAM) */
    int random_weights;                /* non-zero: no checkpoint, deterministic random weights (default 0) */
    uint64_t seed;                     /* seed of random_weights (default 1) */
    int allow_tf32;                    /* CUDA float32: allow TF32 matmul and convolution (faster, about 1e-3
                                          relative error); default 0 = exact float32. libtorch keeps this
                                          setting process-wide: the last CUDA model opened decides */
} samda_model_params;

/** Set the C library's allocator up for the model's tensors (4 to 64 MB each, freed and allocated again at
 *  every layer): blocks up to 32 MiB come from the heap instead of fresh mmap()ed pages, and up to 512 MiB of
 *  freed heap is kept rather than returned to the kernel at once. Measured with vit_b on 2 cores: a quarter of
 *  the decoder's time and an eighth of the encoder's went to zeroing fresh pages without it. Process-wide
 *  (mallopt); peak RSS may stay higher after a burst.
 *  Thread-safety: call once from main() before any thread starts. */
void samda_model_tune_allocator(void);

/** Fill *p with the defaults documented in samda_model_params. The only correct way to start.
 *  @param p OUT: parameters to initialise (NULL: no-op). */
void samda_model_params_init(samda_model_params *p);

/** Load a SAM network.
 *  @param p   IN: parameters from samda_model_params_init(), then adjusted.
 *  @param err OUT: reason on failure (may be NULL).
 *  @return the model, or NULL with err set: SAMDA_EINVAL (bad parameter, unknown arch, no CUDA device for a
 *          CUDA request), SAMDA_ENOENT (checkpoint or config file missing), SAMDA_ENOTSUP (half precision
 *          on the CPU), SAMDA_EMODEL (unreadable checkpoint; missing, unexpected or mis-shaped key, named in
 *          the message), SAMDA_ENOMEM.
 *  Ownership: caller owns the model; release with samda_model_close(). Strings in p are copied.
 *  Thread-safety: may run concurrently with other opens (but sets the process-wide thread count). */
samda_model *samda_model_open(const samda_model_params *p, samda_error *err);

/** Release a model. Embeddings made by it stay valid (they own their tensors). NULL is a no-op. */
void samda_model_close(samda_model *m);

typedef struct samda_model_info {
    char arch[16];               /* "vit_b", "vit_l", "vit_h" or "custom" */
    int img_size;                /* encoder input side S (1024 for official SAM) */
    int embed_dim, depth, num_heads; /* image encoder ViT sizes */
    int embedding_channels;      /* 256 */
    int embedding_size;          /* S / 16 (64) */
    int low_res_size;            /* 4 * embedding_size (256): side of low-res logits and mask inputs */
    int n_multimask;             /* masks per prompt with SAMDA_MODEL_DECODE_MULTIMASK (3) */
    int64_t n_params_image_encoder, n_params_prompt_encoder, n_params_mask_decoder, n_params_total;
    char fingerprint[65];        /* SHA-256 (hex) of the sorted tensor names, dtypes, shapes and bytes */
    char device[64];             /* "cpu" or "cuda:N" */
    int is_cuda;
    char blas[32];               /* "openblas", "reference", "mkl", "blis", ... or "unknown" */
    char blas_path[256];         /* real path of the BLAS library in use ("" when built in) */
    int n_threads;               /* intra-op threads in use */
    int max_batch;               /* images per encoder forward */
    samda_model_dtype encoder_dtype;
    samda_model_convention convention;
} samda_model_info;

/** Describe a loaded model.
 *  @param m IN. @param out OUT: filled on success.
 *  @return SAMDA_OK; SAMDA_EINVAL when m or out is NULL.  Thread-safety: safe. */
samda_status samda_model_get_info(const samda_model *m, samda_model_info *out, samda_error *err);

/** The model's fingerprint (64 hex characters). Ownership: borrowed, valid until samda_model_close(m). */
const char *samda_model_fingerprint(const samda_model *m);

/** Memory in use on the model's CUDA device (whole device, all processes: total minus free, as the CUDA
 *  runtime reports it; libtorch's caching allocator keeps what it reserved, so after work this is close
 *  to the peak reserved).
 *  @param used_bytes, total_bytes OUT.
 *  @return SAMDA_OK; SAMDA_ENOTSUP on the CPU or when the CUDA runtime cannot be queried; SAMDA_EINVAL. */
samda_status samda_model_get_device_memory(const samda_model *m, size_t *used_bytes, size_t *total_bytes,
                                           samda_error *err);

typedef enum samda_model_pixel_type {
    SAMDA_MODEL_PIXEL_U8 = 0, /* uint8 0..255 */
    SAMDA_MODEL_PIXEL_F32 = 1 /* float, already windowed to 0..255 (medical images) */
} samda_model_pixel_type;

typedef struct samda_model_image {
    const void *pixels;          /* row-major H x W x C, tightly packed; borrowed for the call */
    int height, width;           /* 1 .. 16384 each */
    int channels;                /* 1 (grey, repeated to RGB) or 3 (RGB) */
    samda_model_pixel_type type;
} samda_model_image;

/** Turn an image into the encoder input (the model's convention).
 *  @param img     IN: the image.
 *  @param out     OUT: 3 x S x S floats (S = info.img_size).  @param out_len IN: capacity in floats.
 *  @param input_h, input_w OUT: size of the resized image inside the S x S input (may be NULL).
 *  @return SAMDA_OK; SAMDA_EINVAL (bad image, out_len < 3*S*S), SAMDA_EMODEL, SAMDA_ENOMEM.
 *  Thread-safety: safe. */
samda_status samda_model_preprocess(const samda_model *m, const samda_model_image *img, float *out, size_t out_len,
                                    int *input_h, int *input_w, samda_error *err);

/** One image for samda_model_encode(): either a raw image or an already preprocessed input. */
typedef struct samda_model_encode_item {
    const samda_model_image *image;   /* raw image; NULL when preprocessed is given */
    const float *preprocessed;        /* 3 x S x S from samda_model_preprocess(); NULL when image is given */
    int original_height, original_width; /* with preprocessed: the image's size before preprocessing */
    int input_height, input_width;    /* with preprocessed: the content size inside S x S */
} samda_model_encode_item;

/** Encode n images (batched by max_batch, in inference mode).
 *  @param items IN: n items. @param out OUT: n embedding handles (all NULL on failure).
 *  @return SAMDA_OK; SAMDA_EINVAL (bad item, n = 0); SAMDA_ENOMEM (host or device memory); SAMDA_EMODEL.
 *  Ownership: caller owns each out[i]; release with samda_embedding_release().
 *  Thread-safety: safe (concurrent encodes share the device). */
samda_status samda_model_encode(const samda_model *m, const samda_model_encode_item *items, size_t n,
                                samda_embedding **out, samda_error *err);

/** Wrap an embedding computed elsewhere (e.g. the reference implementation) for decoding with m.
 *  @param data IN: C x h x w floats (C = embedding_channels, h = w = embedding_size); len = C*h*w.
 *  @param original_h/w IN: the image's size; input_h/w IN: content size inside S x S.
 *  @return a new embedding (caller releases) or NULL with err (SAMDA_EINVAL, SAMDA_ENOMEM). */
samda_embedding *samda_model_embedding_from_data(const samda_model *m, const float *data, size_t len,
                                                 int original_h, int original_w, int input_h, int input_w,
                                                 samda_error *err);

typedef struct samda_embedding_info {
    int channels, height, width;         /* 256 x 64 x 64 for official SAM */
    int original_height, original_width; /* the image's size */
    int input_height, input_width;       /* content size inside the S x S input */
    int img_size;                        /* S */
    size_t bytes;                        /* memory held (on the model's device) */
    samda_model_convention convention;
    char fingerprint[65];                /* fingerprint of the model that made it */
} samda_embedding_info;

/** Describe an embedding. @return SAMDA_OK; SAMDA_EINVAL when e or out is NULL. */
samda_status samda_embedding_get_info(const samda_embedding *e, samda_embedding_info *out);
/** Copy the embedding to host memory as C x h x w floats. @return SAMDA_OK; SAMDA_EINVAL (out_len too small). */
samda_status samda_embedding_copy_data(const samda_embedding *e, float *out, size_t out_len, samda_error *err);
/** Take another reference. @return e. Thread-safety: safe. */
samda_embedding *samda_embedding_retain(samda_embedding *e);
/** Drop a reference; the last one frees the embedding. NULL is a no-op. Thread-safety: safe. */
void samda_embedding_release(samda_embedding *e);

/** One prompt. Points and box are in original-image pixels. */
typedef struct samda_model_prompt {
    const float *points;       /* n_points x 2 (x, y); NULL when n_points = 0 */
    const int *point_labels;   /* n_points labels: 1 foreground, 0 background, -1 padding (ignored point) */
    size_t n_points;           /* 0 .. 256 */
    const float *box;          /* x0, y0, x1, y1, or NULL */
    const float *mask_input;   /* previous low-res logits, low_res_size x low_res_size, or NULL */
} samda_model_prompt;

#define SAMDA_MODEL_DECODE_MULTIMASK 1u /* n_multimask masks per prompt instead of one */

/** Output buffers of samda_model_decode(); any may be NULL (not computed). With n prompts, C masks per prompt
 *  (1, or n_multimask with SAMDA_MODEL_DECODE_MULTIMASK), L = low_res_size, H x W = original image size: */
typedef struct samda_model_decode_out {
    float *low_res_logits; size_t low_res_len;     /* n x C x L x L */
    float *iou;            size_t iou_len;         /* n x C predicted IoU */
    float *mask_logits;    size_t mask_logits_len; /* n x C x H x W logits at the original size */
    uint8_t *masks;        size_t masks_len;       /* n x C x H x W, 1 where the logit > 0 */
} samda_model_decode_out;

/** Decode n prompts against one embedding, batched in one call (prompts of the same shape run together).
 *  @param e IN: from samda_model_encode() or _embedding_from_data() with a model of the same fingerprint.
 *  @param prompts IN: n_prompts prompts (n_prompts >= 1). @param flags IN: SAMDA_MODEL_DECODE_*.
 *  @param out INOUT: buffers and their capacities in elements.
 *  @return SAMDA_OK; SAMDA_EINVAL (bad prompt, a buffer too small, embedding of another model);
 *          SAMDA_ENOMEM; SAMDA_EMODEL. Buffers are unspecified after a failure.
 *  Ownership: inputs borrowed for the call.  Thread-safety: safe. */
samda_status samda_model_decode(const samda_model *m, const samda_embedding *e, const samda_model_prompt *prompts,
                                size_t n_prompts, unsigned flags, samda_model_decode_out *out, samda_error *err);

/* ---- Embedding cache ------------------------------------------------------------------------- */

typedef struct samda_embedding_cache_stats {
    uint64_t hits, misses, insertions, evictions;
    size_t entries, bytes, max_bytes;
} samda_embedding_cache_stats;

/** New LRU cache holding at most max_bytes of embeddings (max_bytes >= 1).
 *  @return the cache, or NULL with err (SAMDA_EINVAL, SAMDA_ENOMEM). Ownership: free with
 *  samda_embedding_cache_free(). */
samda_embedding_cache *samda_embedding_cache_new(size_t max_bytes, samda_error *err);
/** Free the cache and drop its references. NULL is a no-op. */
void samda_embedding_cache_free(samda_embedding_cache *c);
/** Look up (model fingerprint, model convention, key).
 *  @param key IN: caller's key (image content hash, or instance UID + frame), 1..1024 bytes.
 *  @return a new reference (caller releases) on a hit, NULL on a miss. Counts the hit or miss. */
samda_embedding *samda_embedding_cache_get(samda_embedding_cache *c, const samda_model *m, const char *key);
/** Insert or replace the entry for (e's fingerprint, e's convention, key), evicting least recently used
 *  entries until it fits.
 *  @return SAMDA_OK; SAMDA_EINVAL (NULL argument, bad key); SAMDA_ETOOBIG (e alone exceeds max_bytes: not
 *          stored); SAMDA_ENOMEM. Ownership: the cache takes its own reference; the caller keeps its own. */
samda_status samda_embedding_cache_put(samda_embedding_cache *c, const char *key, samda_embedding *e,
                                       samda_error *err);
/** Current counters. */
void samda_embedding_cache_get_stats(samda_embedding_cache *c, samda_embedding_cache_stats *out);

/* ---- Decoder adapter (SAM-DA) ---------------------------------------------------------------
 *
 * A samda_adapter is a small set of trainable tensors that plug into the two-way transformer of a
 * model's mask decoder (model/adapter.cpp; docs/adaptation.md):
 *  - bottleneck adapters (dim -> rank -> dim, GELU, residual; up-projection zero-initialised) on
 *    the outputs of the token sub-layers (self-attention, token->image attention, MLP) and of the
 *    image sub-layer (image->token attention) of every two-way block;
 *  - per label, n_tokens "input" tokens that replace the point/box tokens in prompt-free mode, so
 *    the label's tokens are its query; plus one more token set for prompted use;
 *  - per block and token set, n_tokens prompt tokens joined to the decoder's tokens: the tokens
 *    (self-attention) and the image (image->token attention) also attend to them, through the
 *    block's own frozen projections, in a separate softmax whose output is scaled by a per-block
 *    gate initialised to zero (zero-init attention gating).
 * A fresh adapter adds exact zeros to every sub-layer, so prompted decoding is bit-for-bit the
 * base model's. Only the adapter's tensors train; the base model is never written. */

typedef struct samda_adapter samda_adapter; /* opaque; model/adapter.cpp */

#define SAMDA_ADAPTER_VIT_B_PARAMS 93735472LL /* SAM ViT-B, the budget reference (1% = 937,354) */
#define SAMDA_ADAPTER_MAX_LABELS 64

/* Placement bits (samda_adapter_params.placement). */
#define SAMDA_ADAPTER_PLACE_SELF_ATTN   0x01u /* bottleneck after token self-attention */
#define SAMDA_ADAPTER_PLACE_TOKEN2IMAGE 0x02u /* bottleneck after token->image attention */
#define SAMDA_ADAPTER_PLACE_MLP         0x04u /* bottleneck after the token MLP */
#define SAMDA_ADAPTER_PLACE_IMAGE       0x08u /* bottleneck after image->token attention */
#define SAMDA_ADAPTER_PLACE_TOKENS_SELF 0x10u /* gated prompt tokens in token self-attention */
#define SAMDA_ADAPTER_PLACE_TOKENS_IMAGE 0x20u /* gated prompt tokens in image->token attention */
#define SAMDA_ADAPTER_PLACE_EMBED       0x40u /* bottleneck on the image embedding as the decoder takes it in */
#define SAMDA_ADAPTER_PLACE_ALL         0x7Fu

typedef enum samda_window_kind {
    SAMDA_WINDOW_CT = 0, /* a = level (HU), b = width (HU): [a - b/2, a + b/2] -> 0..255 */
    SAMDA_WINDOW_MR = 1  /* a, b = low and high percentiles (0..100) of the slice -> 0..255 */
} samda_window_kind;

/** One label of a site adapter: what to segment and how to show and code it. */
typedef struct samda_adapter_label {
    char name[64];               /* machine name, [A-Za-z0-9_.-], e.g. "liver" */
    int value;                   /* label id in training masks (1..255) */
    char category_scheme[16];    /* Segmented Property Category: "SCT" */
    char category_code[32];      /* e.g. "123037004" */
    char category_meaning[64];   /* e.g. "Anatomical Structure" */
    char type_scheme[16];        /* Segmented Property Type: "SCT" */
    char type_code[32];          /* e.g. "10200004" */
    char type_meaning[64];       /* e.g. "Liver" */
    uint8_t rgb[3];              /* display colour */
    samda_window_kind window_kind;
    double window_a, window_b;   /* see samda_window_kind */
    char region_scheme[16];      /* Anatomic Region (optional; all three "" = none), e.g. "SCT" */
    char region_code[32];        /* e.g. "10200004" */
    char region_meaning[64];     /* e.g. "Liver" */
    char modifier_scheme[16];    /* Anatomic Region Modifier (optional, only with a region; "" = none) */
    char modifier_code[32];      /* e.g. "7771000" */
    char modifier_meaning[64];   /* e.g. "Left" */
    char type_modifier_scheme[16];  /* Segmented Property Type Modifier (optional; "" = none), e.g. "SCT" */
    char type_modifier_code[32];    /* e.g. "7771000" (left kidney: type Kidney, modifier Left) */
    char type_modifier_meaning[64]; /* e.g. "Left" */
} samda_adapter_label;

/** Parse a label schema: a JSON array of label objects, the format of an adapter file's "labels"
 *  metadata (docs/adaptation.md, "Label schema"): name, value, category and type {scheme, code,
 *  meaning}, rgb [r, g, b], window {kind "ct", level, width} or {kind "mr", low_percentile,
 *  high_percentile}, and optionally type_modifier {scheme, code, meaning} and region {scheme, code,
 *  meaning, modifier {scheme, code, meaning}}.
 *  @param text IN: len bytes of JSON. @param source IN: what to name in messages (a file name; may be NULL).
 *  @param out OUT: *n_out labels, checked as samda_adapter_new() checks them.
 *  @return SAMDA_OK; SAMDA_EINVAL with a message "SOURCE: labels[I] (NAME).FIELD: why"; SAMDA_ENOMEM.
 *  Ownership: caller frees *out with free(). Thread-safety: safe. */
samda_status samda_adapter_labels_parse(const char *text, size_t len, const char *source, samda_adapter_label **out,
                                        size_t *n_out, samda_error *err);

/** The label schema JSON text of n labels (what samda_adapter_labels_parse() reads back).
 *  @return the NUL-terminated text, or NULL with err (SAMDA_EINVAL: bad labels; SAMDA_ENOMEM).
 *  Ownership: caller frees with free(). Thread-safety: safe. */
char *samda_adapter_labels_json(const samda_adapter_label *labels, size_t n, samda_error *err);

typedef struct samda_adapter_params {
    int rank;                          /* bottleneck width r, 1..256 (default 16) */
    int n_tokens;                      /* tokens per set, 1..64 (default 4) */
    unsigned placement;                /* SAMDA_ADAPTER_PLACE_* (default ALL) */
    const samda_adapter_label *labels; /* n_labels labels (copied); names unique */
    size_t n_labels;                   /* 1..SAMDA_ADAPTER_MAX_LABELS */
    uint64_t seed;                     /* initialisation of the tokens (default 1) */
} samda_adapter_params;

/** Defaults as documented above (no labels). */
void samda_adapter_params_init(samda_adapter_params *p);

/** A fresh adapter (identity) for model m.
 *  @return the adapter or NULL with err: SAMDA_EINVAL (bad parameter, named), SAMDA_ENOTSUP (a decoder
 *          whose width the adapter cannot serve), SAMDA_ENOMEM.
 *  Ownership: caller frees with samda_adapter_free(); m must outlive it. Thread-safety: safe. */
samda_adapter *samda_adapter_new(const samda_model *m, const samda_adapter_params *p, samda_error *err);

/** Add to a the placements of `placement` it lacks, each freshly initialised (so a's outputs do not
 *  change); placements it has are kept as they are. For training an adapter made with fewer.
 *  @return SAMDA_OK; SAMDA_EINVAL (NULL, unknown bits); SAMDA_ENOMEM.
 *  Thread-safety: not with any other use of a. */
samda_status samda_adapter_extend(samda_adapter *a, unsigned placement, samda_error *err);

/** Load an adapter file (.safetensors) for model m.
 *  @return the adapter or NULL with err: SAMDA_ENOENT (no file), SAMDA_EIO (unreadable),
 *          SAMDA_EINVAL (malformed file, wrong format or version, payload SHA-256 mismatch, missing or
 *          mis-shaped tensor, bad labels; the message says which), SAMDA_EMODEL (the adapter belongs to
 *          another base model: both fingerprints are named), SAMDA_ENOMEM.
 *  Ownership: as samda_adapter_new(). */
samda_adapter *samda_adapter_load(const samda_model *m, const char *path, samda_error *err);

/** Write the adapter to path (.safetensors, float32; temporary file renamed into place).
 *  @return SAMDA_OK; SAMDA_EINVAL; SAMDA_EIO. Thread-safety: not with training of a. */
samda_status samda_adapter_save(const samda_adapter *a, const char *path, samda_error *err);

/** Deep copy (e.g. to adapt one study and discard). @return the copy or NULL with err (SAMDA_ENOMEM). */
samda_adapter *samda_adapter_clone(const samda_adapter *a, samda_error *err);

/** Release an adapter. NULL is a no-op. */
void samda_adapter_free(samda_adapter *a);

typedef struct samda_adapter_info {
    int rank, n_tokens, depth, dim;
    unsigned placement;
    size_t n_labels;
    int64_t n_trainable;           /* adapter parameters (everything that trains) */
    double fraction_of_vit_b;      /* n_trainable / SAMDA_ADAPTER_VIT_B_PARAMS */
    double fraction_of_base;       /* n_trainable / the base model's parameter count */
    char base_fingerprint[65];     /* fingerprint of the model it belongs to */
    char version[17];              /* first 16 hex of the payload SHA-256 ("" until saved or loaded) */
    char parent[17];               /* version it was trained from ("" for none) */
} samda_adapter_info;

/** Describe an adapter. @return SAMDA_OK; SAMDA_EINVAL (NULL argument). Thread-safety: safe. */
samda_status samda_adapter_get_info(const samda_adapter *a, samda_adapter_info *out, samda_error *err);

/** Label i (0-based) or NULL. Ownership: borrowed, valid while a lives. */
const samda_adapter_label *samda_adapter_label_at(const samda_adapter *a, size_t i);

/** A metadata value of the adapter file ("labels", "input", "provenance" (JSON text), "parent",
 *  "version", "base_fingerprint", "format_version", ...), or NULL. Borrowed until a changes. */
const char *samda_adapter_metadata(const samda_adapter *a, const char *key);

/** Window raw values (HU for CT) to 0..255 for a label (MR: percentiles of these values).
 *  @param values IN: n values. @param out OUT: n floats in 0..255.
 *  @return SAMDA_OK; SAMDA_EINVAL (NULL, n = 0, width <= 0, percentiles outside 0..100 or not increasing). */
samda_status samda_adapter_window(const samda_adapter_label *label, const float *values, size_t n, float *out,
                                  samda_error *err);

/** Prompt-free decoding: one mask per requested label, the label's tokens as the query.
 *  @param labels IN: n label indices (0-based); @param out: as samda_model_decode() with C = 1 per label.
 *  @return SAMDA_OK; SAMDA_EINVAL (bad index, embedding of another model, buffer too small); SAMDA_ENOMEM;
 *          SAMDA_EMODEL. Thread-safety: safe (a read-only). */
samda_status samda_adapter_decode_labels(const samda_model *m, const samda_adapter *a, const samda_embedding *e,
                                         const size_t *labels, size_t n, samda_model_decode_out *out,
                                         samda_error *err);

/** Prompted decoding (points, boxes, previous mask) with the adapter active; as samda_model_decode().
 *  @param label IN: the label whose prompt tokens join the decoder (0-based), or -1 for the prompted
 *  token set. With a fresh adapter the result equals samda_model_decode()'s. */
samda_status samda_adapter_decode(const samda_model *m, const samda_adapter *a, const samda_embedding *e,
                                  const samda_model_prompt *prompts, size_t n_prompts, unsigned flags, int label,
                                  samda_model_decode_out *out, samda_error *err);

/* ---- Supervised adaptation and test-time adaptation (model/train.cpp) --------------------------- */

typedef enum samda_train_prompt {
    SAMDA_TRAIN_PROMPT_FREE = 0,  /* the label's tokens only */
    SAMDA_TRAIN_PROMPT_BOX = 1,   /* boxes from the ground truth, jittered */
    SAMDA_TRAIN_PROMPT_MIXED = 2, /* free, box and point batches in turn (default) */
    SAMDA_TRAIN_PROMPT_POINT = 3  /* 1..3 positive points inside the ground truth */
} samda_train_prompt;

typedef enum samda_train_scope {
    SAMDA_TRAIN_SCOPE_ADAPTER = 0, /* adapter only, base frozen (default) */
    SAMDA_TRAIN_SCOPE_DECODER = 1, /* mask decoder + adapter tokens: CHANGES THE MODEL's weights */
    SAMDA_TRAIN_SCOPE_FULL = 2     /* every weight incl. the image encoder: CHANGES THE MODEL's weights;
                                      a may be NULL (pre-training with prompts, no labels' tokens) */
} samda_train_scope;

typedef struct samda_train_params {
    const char *data_dir;      /* NAME.image.npy (H x W, any numeric type) + NAME.mask.npy (label ids) */
    int epochs;                /* default 30 */
    double lr;                 /* AdamW learning rate, default 1e-3 (use ~1e-4 for DECODER/FULL) */
    double weight_decay;       /* default 1e-4 */
    int batch;                 /* items per step, default 8 */
    double val_split;          /* fraction of cases held out, 0..0.9 (default 0.2; 0 = none) */
    int patience;              /* epochs without validation gain before stopping (default 5; 0 = never) */
    uint64_t seed;             /* data split, sampling, jitter (default 1) */
    samda_train_prompt prompt; /* default MIXED (FREE when scope FULL has no adapter: then BOX/POINT) */
    samda_train_scope scope;   /* default ADAPTER */
    int flip;                  /* non-zero: also train on horizontally flipped slices (default 1) */
    int max_cases;             /* use at most this many cases (sorted by name, then seeded shuffle); 0 = all */
    int progress;              /* -1 auto (stderr is a terminal), 0 off, 1 on */
    double max_seconds;        /* stop after this wall time (0 = no limit) */
} samda_train_params;

void samda_train_params_init(samda_train_params *p);

typedef struct samda_train_report {
    int n_cases, n_train, n_val;    /* cases (slices) */
    int n_items;                     /* (slice, label, flip) items per epoch */
    int epochs_run, best_epoch;
    double best_val_dice;            /* mean Dice on the validation cases (prompt-free if an adapter) */
    double final_loss;               /* mean training loss of the last epoch */
    double encode_seconds;           /* frozen encoder, once per slice and flip */
    double seconds_per_epoch;
    double total_seconds;
    int64_t n_trainable;
    size_t peak_bytes;               /* peak resident memory (CPU) or peak allocated (CUDA) */
    /* Box guard (scope ADAPTER): box-prompted Dice may not fall below the parent's (the adapter as
     * it came in), measured on the validation cases, else the training cases (box_guard_cases): */
    int box_guard;                   /* 1 when it ran */
    int box_guard_cases;
    double box_dice_parent;          /* the adapter as it came in */
    double box_dice_base;            /* the base model without adapter, for reference */
    double box_dice_after;           /* the adapter returned */
    int box_rolled_back;             /* 1: no epoch kept it; everything but the label tokens went back
                                        to the parent's (box Dice is the parent's exactly) */
    int label_token_epochs;          /* after a rollback: epochs that trained the label tokens alone */
} samda_train_report;

/** Supervised training of a (and, with scope DECODER/FULL, of m's weights). Validation picks the best
 *  epoch among those whose box-prompted Dice is not below the parent's (scope ADAPTER; see
 *  samda_train_report's box guard); a ends with the best weights. Deterministic on the CPU for the same inputs, seed and thread
 *  count. Provenance (counts, seed, epochs, metrics) is recorded in a's metadata.
 *  @param m IN (INOUT for DECODER/FULL: then no other thread may use m).
 *  @param a INOUT: trained in place (NULL only with scope FULL and prompts BOX/POINT).
 *  @param report OUT (may be NULL).
 *  @return SAMDA_OK; SAMDA_EINVAL (bad parameter, no cases, image/mask mismatch, no label of a in the
 *          masks); SAMDA_ENOENT (data_dir missing); SAMDA_EIO (unreadable file); SAMDA_ENOMEM; SAMDA_EMODEL. */
samda_status samda_adapter_train(samda_model *m, samda_adapter *a, const samda_train_params *p,
                                 samda_train_report *report, samda_error *err);

/** Evaluation: per-case Dice written as JSON to *json_out (malloc'd; caller frees):
 *  {"mode":"free"|"box","cases":[{"name":..,"dice":{"liver":0.93,..}},..],"per_label":{..},"mean_dice":x}.
 *  Labels are a's, or (a NULL) the phantom's labels 1..5 with the base model and box prompts. Only labels
 *  present in a case's ground truth are scored; "per_label" is the Dice over all pixels of all cases.
 *  @param prompt IN: FREE (needs a) or BOX. @param mean_dice OUT (may be NULL).
 *  @return as samda_adapter_train(). */
samda_status samda_adapter_evaluate(const samda_model *m, const samda_adapter *a, const char *data_dir,
                                    samda_train_prompt prompt, int max_cases, char **json_out, double *mean_dice,
                                    samda_error *err);

/** The unadapted base model, box-prompted, on labels_of's labels (their values and windows; labels_of
 *  itself stays out of the decoder): the reference an adapter's box-prompted Dice must not fall below.
 *  Output and ownership as samda_adapter_evaluate() with BOX. Thread-safety: as samda_adapter_evaluate().
 *  @return as samda_adapter_evaluate(); SAMDA_EINVAL when labels_of is NULL. */
samda_status samda_adapter_evaluate_base(const samda_model *m, const samda_adapter *labels_of, const char *data_dir,
                                         int max_cases, char **json_out, double *mean_dice, samda_error *err);

/** How a predicted binary mask agrees with the ground truth on one slice. */
typedef struct samda_mask_metrics {
    double dice;             /* 2 |P and G| / (|P| + |G|); 1 when both are empty */
    double hd95;             /* 95th-percentile symmetric Hausdorff distance between the boundaries
                              * (boundary pixels: in the mask with a 4-neighbour outside it or the
                              * image); the larger of the two directed 95th percentiles (linear
                              * interpolation), in mm with a spacing, else in pixels. NAN when P or G
                              * is empty (undefined: count such cases rather than invent a value) */
    double volume_diff_pct;  /* 100 (|P| - |G|) / |G| (area on a slice); NAN when G is empty */
    int64_t n_pred, n_gt, n_inter; /* pixels */
} samda_mask_metrics;

/** Dice, HD95 and volume difference of pred against gt (rows x cols, non-zero = inside).
 *  @param spacing IN: {row, column} pixel spacing in mm, or NULL for pixels.
 *  @return SAMDA_OK; SAMDA_EINVAL (NULL, empty image, spacing not positive). Cost: O(b_P * b_G) in
 *  the worst case over the boundary pixel counts. Thread-safety: safe (no shared state). */
samda_status samda_mask_metrics_compute(const uint8_t *pred, const uint8_t *gt, int rows, int cols,
                                        const double *spacing, samda_mask_metrics *out, samda_error *err);

typedef struct samda_tta_params {
    int steps;               /* optimiser steps (default 10; see docs/adaptation.md) */
    double lr;               /* default 5e-4 */
    double ema;              /* teacher EMA decay, default 0.95 */
    double entropy_weight;   /* default 0.5 (consistency weight 1) */
    double max_iou_drop;     /* revert when the mean predicted IoU falls more than this (default 0.05) */
    double min_area_ratio;   /* revert when a label's mean mask area leaves [min, max] times the start */
    double max_area_ratio;   /* (defaults 0.5 and 2.0) */
    int check_every;         /* guard checks every k steps (default 10) */
    double prompt_anchor_weight; /* keeps prompted decoding as it was: weight of a distillation of
                              * box-prompted predictions toward the unadapted adapter's, on boxes
                              * around its prompt-free masks (default 0.3; 0 = off) */
    /* Acceptance rule, checked with the guards against the adapter as it came (the "anchor"), per
     * label on the prompt-free predictions of all images (docs/adaptation.md, "Safe adaptation"): */
    double confident_logit;  /* anchor pixels with |logit| above this are its confident ones (default 2.2, p 0.9) */
    double min_confident_agreement; /* share of the anchor's confident foreground that must stay
                              * foreground (default 0.9) */
    double max_confident_flip; /* anchor's confident background turned foreground, at most this times
                              * the anchor's foreground area (default 0.1) */
    double max_consistency_drop; /* agreement (Dice) of the predictions on the image and on its
                              * flipped and intensity-changed views may fall at most this (default 0.02) */
    uint64_t seed;           /* default 1 */
    int progress;            /* -1 auto, 0 off, 1 on */
} samda_tta_params;

void samda_tta_params_init(samda_tta_params *p);

typedef struct samda_tta_report {
    int steps_run;
    int reverted;             /* 1 when a guard fired: a holds the last weights that passed */
    char reason[256];         /* why it reverted, or "" */
    double iou_before, iou_after;   /* mean predicted IoU over (slice, label) */
    double area_ratio_min, area_ratio_max; /* per-label mean area after / before */
    double seconds;
    /* The acceptance rule's measures of the last weights checked, accepted or not (worst label): */
    double confident_agreement;    /* min share of the anchor's confident foreground kept */
    double confident_flip;         /* max confident background turned foreground / anchor foreground */
    double consistency_before, consistency_after; /* mean Dice between views (flip, intensity) */
    int labels_rolled_back;        /* labels whose tokens were returned to the anchor's */
    char decision[512];            /* "accepted", "accepted; rolled back label(s) ...: why",
                                    * "rejected: why" (then reverted = 1) */
} samda_tta_report;

/** Test-time adaptation of a on unlabelled embeddings (episodic: clone first; continual: keep a).
 *  Objective on a's tensors only: entropy of the prompt-free prediction + agreement with an EMA
 *  teacher's prediction on the flipped view. emb[i] and emb_flipped[i] are the embeddings of image i
 *  and of its horizontal mirror (emb_flipped may be NULL: no consistency term).
 *  Accepted only when the guards and the acceptance rule (samda_tta_params) hold; a label that
 *  alone breaks the rule has its tokens returned to a's as it came; otherwise a returns to the last
 *  weights that passed (report: reverted, reason, decision).
 *  @return SAMDA_OK (also when a guard reverted: see report); SAMDA_EINVAL; SAMDA_ENOMEM; SAMDA_EMODEL. */
samda_status samda_adapter_tta(const samda_model *m, samda_adapter *a, samda_embedding *const *emb,
                               samda_embedding *const *emb_flipped, size_t n, const samda_tta_params *p,
                               samda_tta_report *report, samda_error *err);

/** As samda_adapter_tta() on a folder of NAME.image.npy (masks ignored), windowed per a's labels. */
samda_status samda_adapter_tta_dir(const samda_model *m, samda_adapter *a, const char *data_dir, int max_cases,
                                   const samda_tta_params *p, samda_tta_report *report, samda_error *err);

/** Write m's weights as a torch.save state dict (official key names; float16 when half != 0).
 *  @return SAMDA_OK; SAMDA_EINVAL; SAMDA_EIO. */
samda_status samda_model_save(const samda_model *m, const char *path, int half, samda_error *err);

#ifdef __cplusplus
}
#endif
#endif
