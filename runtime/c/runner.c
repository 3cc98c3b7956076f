/* The runner of a model compiled by chanasc: reads .npy inputs, runs the model, writes .npy
 * outputs, and with --bench N prints latency statistics. It uses only model.h's C API.
 *
 *   model [--input NAME=FILE.npy | --input FILE.npy]... [-o OUT.npy] [--bench N]
 *         [--warmup N] [--threads N] [--profile]
 *
 * An input file may hold several of the model's inputs stacked along the first axis (a
 * dataset for a batch-1 classifier): the model then runs once per slice and each output holds
 * the slices' results stacked the same way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chanasc_runtime.h"
#include "model.h"

static void die(const char *fmt, const char *arg) {
    fprintf(stderr, "error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}

static size_t dtype_size(const char *dtype) {
    if (strcmp(dtype, "f32") == 0) return 4;
    if (strcmp(dtype, "f16") == 0) return 2;
    if (strcmp(dtype, "i64") == 0) return 8;
    return 1; /* bool */
}

static const char *npy_descr(const char *dtype) {
    if (strcmp(dtype, "f32") == 0) return "<f4";
    if (strcmp(dtype, "f16") == 0) return "<f2";
    if (strcmp(dtype, "i64") == 0) return "<i8";
    return "|b1";
}

static size_t numel(int rank, const int64_t *shape) {
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= (size_t)shape[i];
    return n;
}

/* Reads an .npy file holding the input, or `*slices` of them stacked along the first axis
 * (every other dimension and the dtype as the model's input); returns the data. */
static void *read_npy(const char *path, int input, size_t *slices) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s", path);
    unsigned char pre[12];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) die("%s is not an .npy file", path);
    size_t hlen = pre[8] | (pre[9] << 8);
    if (pre[6] >= 2) {
        if (fread(pre + 10, 1, 2, f) != 2) die("%s: truncated header", path);
        hlen = pre[8] | (pre[9] << 8) | ((size_t)pre[10] << 16) | ((size_t)pre[11] << 24);
    }
    char *h = (char *)calloc(hlen + 1, 1);
    if (fread(h, 1, hlen, f) != hlen) die("%s: truncated header", path);
    const char *dtype = model_input_dtype(input);
    char want[32];
    snprintf(want, sizeof want, "'%s'", npy_descr(dtype));
    if (!strstr(h, want)) die("%s: dtype differs from the model input's", path);
    if (strstr(h, "'fortran_order': True")) die("%s: Fortran order is not supported", path);
    char *s = strstr(h, "'shape': (");
    if (!s) die("%s: no shape in header", path);
    s += 10;
    int rank = model_input_rank(input);
    const int64_t *shape = model_input_shape(input);
    *slices = 1;
    for (int i = 0; i < rank; i++) {
        char *end;
        long long d = strtoll(s, &end, 10);
        if (end == s) die("%s: rank differs from the model input's", path);
        if (i == 0 && shape[0] > 0 && d > shape[0] && d % shape[0] == 0) {
            *slices = (size_t)(d / shape[0]);
        } else if (d != shape[i]) {
            die("%s: shape differs from the model input's", path);
        }
        s = end;
        while (*s == ',' || *s == ' ') s++;
    }
    if (*s != ')') die("%s: rank differs from the model input's", path);
    size_t bytes = *slices * numel(rank, shape) * dtype_size(dtype);
    void *data = malloc(bytes ? bytes : 1);
    if (!data) die("%s: out of memory", path);
    if (fread(data, 1, bytes, f) != bytes) die("%s: data is truncated", path);
    free(h);
    fclose(f);
    return data;
}

/* Writes an .npy file atomically (to a temporary name, then renamed): `slices` of the output
 * stacked along the first axis. */
static void write_npy(const char *path, int output, const void *src, size_t slices) {
    int rank = model_output_rank(output);
    const int64_t *shape = model_output_shape(output);
    char header[512], dims[256] = "";
    for (int i = 0; i < rank; i++) {
        char d[32];
        long long extent = (long long)shape[i] * (i == 0 ? (long long)slices : 1);
        snprintf(d, sizeof d, rank == 1 ? "%lld," : (i + 1 < rank ? "%lld, " : "%lld"), extent);
        strcat(dims, d);
    }
    int n = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                     npy_descr(model_output_dtype(output)), dims);
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) die("cannot write %s", path);
    unsigned short hlen = (unsigned short)(n + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hlen & 0xff, f);
    fputc(hlen >> 8, f);
    fwrite(header, 1, (size_t)n, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    size_t bytes = slices * numel(rank, shape) * dtype_size(model_output_dtype(output));
    if (fwrite(src, 1, bytes, f) != bytes || fclose(f) != 0) die("cannot write %s", path);
    if (rename(tmp, path) != 0) die("cannot rename into %s", path);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int ni = model_num_inputs(), no = model_num_outputs();
    const char **files = (const char **)calloc((size_t)ni, sizeof(char *));
    const char *out_path = NULL;
    int bench = 0, warmup = 10, threads = MODEL_DEFAULT_THREADS, profile = 0;
    for (int a = 1; a < argc; a++) {
        if ((strcmp(argv[a], "--input") == 0 || strcmp(argv[a], "-i") == 0) && a + 1 < argc) {
            char *spec = argv[++a], *eq = strchr(spec, '=');
            int which = 0;
            if (eq) {
                *eq = 0;
                which = -1;
                for (int i = 0; i < ni; i++)
                    if (strcmp(model_input_name(i), spec) == 0) which = i;
                if (which < 0) die("the model has no input \"%s\"", spec);
                spec = eq + 1;
            }
            files[which] = spec;
        } else if (strcmp(argv[a], "-o") == 0 && a + 1 < argc) {
            out_path = argv[++a];
        } else if (strcmp(argv[a], "--bench") == 0 && a + 1 < argc) {
            bench = atoi(argv[++a]);
        } else if (strcmp(argv[a], "--warmup") == 0 && a + 1 < argc) {
            warmup = atoi(argv[++a]);
        } else if (strcmp(argv[a], "--threads") == 0 && a + 1 < argc) {
            threads = atoi(argv[++a]);
        } else if (strcmp(argv[a], "--profile") == 0) {
            profile = 1;
        } else {
            die("unknown argument %s (usage: model [--input NAME=FILE.npy]... [-o OUT.npy] [--bench N] [--warmup N] [--threads N] [--profile])", argv[a]);
        }
    }
    /* Each input's data (all its slices); inputs without a file are zeros. A file with one
     * slice gives every run the same input. */
    void **data = (void **)calloc((size_t)ni, sizeof(void *));
    size_t slices = 1, *input_slices = (size_t *)calloc((size_t)ni, sizeof(size_t));
    size_t *input_bytes = (size_t *)calloc((size_t)ni, sizeof(size_t));
    for (int i = 0; i < ni; i++) {
        input_bytes[i] = numel(model_input_rank(i), model_input_shape(i)) * dtype_size(model_input_dtype(i));
        if (!files[i]) continue;
        data[i] = read_npy(files[i], i, &input_slices[i]);
        if (input_slices[i] > 1 && slices > 1 && input_slices[i] != slices)
            die("%s: holds another number of stacked inputs than the other files", files[i]);
        if (input_slices[i] > 1) slices = input_slices[i];
    }
    void **inputs = (void **)calloc((size_t)ni, sizeof(void *));
    for (int i = 0; i < ni; i++) inputs[i] = calloc(input_bytes[i] ? input_bytes[i] : 1, 1);
    void **outputs = (void **)calloc((size_t)no, sizeof(void *));
    void **stacked = (void **)calloc((size_t)no, sizeof(void *));
    size_t *output_bytes = (size_t *)calloc((size_t)no, sizeof(size_t));
    for (int i = 0; i < no; i++) {
        output_bytes[i] = numel(model_output_rank(i), model_output_shape(i)) * dtype_size(model_output_dtype(i));
        outputs[i] = calloc(output_bytes[i] ? output_bytes[i] : 1, 1);
        stacked[i] = calloc(slices * output_bytes[i] ? slices * output_bytes[i] : 1, 1);
    }
    model_model *m = model_create(threads);
    if (!m) die("%s", "cannot create the model (out of memory?)");
    for (size_t k = 0; k < slices; k++) {
        for (int i = 0; i < ni; i++)
            if (data[i]) memcpy(inputs[i], (char *)data[i] + (input_slices[i] > 1 ? k : 0) * input_bytes[i], input_bytes[i]);
        model_run(m, (const void *const *)inputs, (void *const *)outputs);
        for (int i = 0; i < no; i++) memcpy((char *)stacked[i] + k * output_bytes[i], outputs[i], output_bytes[i]);
    }
    if (out_path) {
        for (int i = 0; i < no; i++) {
            char path[4096];
            if (no == 1) {
                snprintf(path, sizeof path, "%s", out_path);
            } else {
                const char *dot = strrchr(out_path, '.');
                int stem = dot ? (int)(dot - out_path) : (int)strlen(out_path);
                snprintf(path, sizeof path, "%.*s_%s.npy", stem, out_path, model_output_name(i));
            }
            write_npy(path, i, stacked[i], slices);
            printf("%s: written to %s\n", model_output_name(i), path);
        }
    }
    if (bench > 0) {
        for (int r = 0; r < warmup; r++) model_run(m, (const void *const *)inputs, (void *const *)outputs);
        double *t = (double *)malloc(sizeof(double) * (size_t)bench);
        double sum = 0;
        for (int r = 0; r < bench; r++) {
            double start = chanasc_now();
            model_run(m, (const void *const *)inputs, (void *const *)outputs);
            t[r] = (chanasc_now() - start) * 1e3;
            sum += t[r];
        }
        qsort(t, (size_t)bench, sizeof(double), cmp_double);
        printf("runs %d, threads %d\n", bench, threads);
        printf("median %.4f ms  mean %.4f ms  p90 %.4f ms  min %.4f ms\n", t[bench / 2], sum / bench,
               t[(bench * 9) / 10 < bench ? (bench * 9) / 10 : bench - 1], t[0]);
        free(t);
    }
    if (profile) {
        model_run(m, (const void *const *)inputs, (void *const *)outputs);
        printf("%-40s %10s %10s\n", "program", "ms", "GFLOP/s");
        for (int i = 0; i < model_num_programs(); i++) {
            double s = model_program_seconds(m, i);
            printf("%-40s %10.4f %10.2f\n", model_program_name(i), s * 1e3, s > 0 ? model_program_flops(i) / s * 1e-9 : 0.0);
        }
    }
    model_destroy(m);
    return 0;
}
