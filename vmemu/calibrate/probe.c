/* The measuring loops of vmemu calibrate: this host's memory primitives.
 * Each mode prints key=value lines on stdout; vmemu/calibrate/measure.py
 * reads them.  Every timing is the best of several trials, so a trial
 * disturbed by another process (or a vCPU preempted by the hypervisor)
 * is dropped rather than averaged in.
 *
 *   probe clear -m stosb|store|nt -b BYTES -t THREADS -n PASSES -p CPUS [-N NODE]
 *       each thread clears its own BYTES page by page, PASSES times:
 *       bytes_per_ns of all threads together.  stosb is the kernel's
 *       clear_page on x86-64 CPUs with ERMS (rep stosb), store plain
 *       16-byte stores, nt non-temporal stores (no line is read first).
 *   probe chase -b BYTES -k K,K,... -n LOADS -p CPU [-N NODE]
 *       K independent pointer chases through one random cycle of the
 *       lines of BYTES: ns_per_load for each K (K=1 is the latency).
 *   probe run -b BYTES -k LINES,... -p CPU
 *       store to the first LINES lines of every page of BYTES, pages in a
 *       random order, a fence after each page (a fault serialises as the
 *       fence does), the caches emptied before each trial: ns_per_page
 *       for each LINES.
 *   probe alloc -b BYTES -m stosb|store|nt -p CPU
 *       the lines of BYTES (less than the CPU's own cache) flushed from
 *       every cache, then written, then loaded: ns per load when the lines
 *       were cached, flushed, written a byte each (byte_ns: a store miss
 *       that brings its line in is write-allocate), cleared by -m.  x86-64
 *       only (clflush); exit code 3 elsewhere.
 *   probe pingpong -n ROUNDS -p CPU,CPU
 *       one line written in turn by two threads pinned to the two CPUs,
 *       in batches of ROUNDS round trips: ns_per_transfer, the time for
 *       the line to move to the other CPU, from the best of BATCHES.
 *
 * -l LINE is the cache line (default 64): the chase's stride, the run's
 * step.  -N NODE binds BYTES to a NUMA node (mbind).  Buffers other than the
 * ones a mode clears use MADV_HUGEPAGE where THP is available, so that
 * TLB misses stay out of the memory latencies.
 * Build: cc -O2 -pthread -o probe probe.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#define MAX_LIST 64
#define TRIALS 3
#define BATCHES 200		/* ping-pong: short batches, so some run between two preemptions */

struct opts {
	const char *method;
	size_t bytes, page, line;	/* -l: the cache line, the chase's stride and the run's step */
	long count;
	int threads, node;
	int list[MAX_LIST], nlist;	/* -k */
	int cpus[MAX_LIST], ncpus;	/* -p */
};

static void die(const char *what)
{
	fprintf(stderr, "probe: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("sched_setaffinity");
}

/* xorshift64: a fixed seed, so every run visits the same order */
static uint64_t rnd(void)
{
	static uint64_t x = 0x9e3779b97f4a7c15ULL;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x;
}

static void bind_node(void *p, size_t len, int node)
{
	unsigned long mask[16] = { 0 };

	if (node < 0)
		return;
	mask[node / (8 * sizeof(long))] = 1UL << (node % (8 * sizeof(long)));
	/* MPOL_BIND = 2: every page of the range from that node only */
	if (syscall(SYS_mbind, p, len, 2, mask, sizeof(mask) * 8, 0))
		die("mbind");
}

static char *buffer(size_t len, int huge, int node)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap");
	if (huge)
		madvise(p, len, MADV_HUGEPAGE);	/* best effort: THP may be off */
	bind_node(p, len, node);
	memset(p, 1, len);		/* fault it all in now: the timed loops measure memory, not faults */
	return p;
}

/* -- clear ------------------------------------------------------------- */

static void clear_page(char *p, size_t len, const char *method)
{
#if defined(__x86_64__)
	if (!strcmp(method, "stosb")) {
		asm volatile("rep stosb" : "+D"(p), "+c"(len) : "a"(0) : "memory");
	} else if (!strcmp(method, "nt")) {
		for (size_t i = 0; i < len; i += 16)
			_mm_stream_si128((__m128i *)(p + i), _mm_setzero_si128());
		_mm_sfence();
	} else {
		for (size_t i = 0; i < len; i += 16)
			_mm_store_si128((__m128i *)(p + i), _mm_setzero_si128());
	}
#else
	(void)method;
	memset(p, 0, len);
#endif
}

struct clearer {
	const struct opts *o;
	pthread_barrier_t *start, *end;
	int cpu;
	int64_t best;		/* thread 0: the best pass, ns */
};

static void *clear_passes(void *arg)
{
	struct clearer *c = arg;
	const struct opts *o = c->o;
	char *p;

	pin(c->cpu);
	p = buffer(o->bytes, 0, o->node);
	c->best = INT64_MAX;
	for (long pass = 0; pass < o->count; pass++) {
		pthread_barrier_wait(c->start);
		int64_t t = now_ns();

		for (size_t off = 0; off < o->bytes; off += o->page)
			clear_page(p + off, o->page, o->method);
		pthread_barrier_wait(c->end);	/* the pass ends when the last thread is done */
		t = now_ns() - t;
		if (t < c->best)
			c->best = t;
	}
	munmap(p, o->bytes);
	return NULL;
}

static void mode_clear(const struct opts *o)
{
	pthread_t tid[MAX_LIST];
	struct clearer c[MAX_LIST];
	pthread_barrier_t start, end;

	pthread_barrier_init(&start, NULL, o->threads);
	pthread_barrier_init(&end, NULL, o->threads);
	for (int i = 0; i < o->threads; i++) {
		c[i] = (struct clearer){ .o = o, .start = &start, .end = &end, .cpu = o->cpus[i % o->ncpus] };
		errno = pthread_create(&tid[i], NULL, clear_passes, &c[i]);
		if (errno)
			die("pthread_create");
	}
	for (int i = 0; i < o->threads; i++)
		pthread_join(tid[i], NULL);
	printf("method=%s threads=%d bytes_per_ns=%.4f\n", o->method, o->threads,
	       (double)o->bytes * o->threads / c[0].best);
}

/* -- chase ------------------------------------------------------------- */

/* a[0..n) = 0..n-1 in a random order (Fisher-Yates). */
static void identity_shuffled(uint32_t *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		a[i] = i;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = rnd() % (i + 1);
		uint32_t t = a[i];

		a[i] = a[j];
		a[j] = t;
	}
}

/* The lines of p linked into one cycle in a random order; order[i] is the
 * i-th line of the cycle (so K chains can start evenly spaced on it). */
static uint32_t *link_cycle(char *p, size_t n, size_t line)
{
	uint32_t *order = malloc(n * sizeof(*order));

	if (!order)
		die("malloc");
	identity_shuffled(order, n);
	for (size_t i = 0; i < n; i++)
		*(char **)(p + order[i] * line) = p + order[(i + 1) % n] * line;
	return order;
}

static double chase(char *p, const uint32_t *order, size_t n, size_t line, int k, long loads)
{
	char *at[MAX_LIST];
	long steps = loads / k;
	int64_t best = INT64_MAX;

	for (int trial = 0; trial < TRIALS; trial++) {
		for (int c = 0; c < k; c++)
			at[c] = p + order[n / k * c] * line;
		int64_t t = now_ns();

		for (long s = 0; s < steps; s++)
			for (int c = 0; c < k; c++)
				at[c] = *(char **)at[c];
		t = now_ns() - t;
		if (t < best)
			best = t;
		for (int c = 0; c < k; c++)	/* keep the loads: their results are used */
			if (!at[c])
				abort();
	}
	return (double)best / (steps * k);
}

static void mode_chase(const struct opts *o)
{
	size_t n = o->bytes / o->line;
	char *p;
	uint32_t *order;

	pin(o->cpus[0]);
	p = buffer(o->bytes, 1, o->node);
	order = link_cycle(p, n, o->line);
	for (int i = 0; i < o->nlist; i++)
		printf("chains=%d ns_per_load=%.3f\n", o->list[i], chase(p, order, n, o->line, o->list[i], o->count));
	free(order);
	munmap(p, o->bytes);
}

/* -- run of lines ------------------------------------------------------ */

/* Wait until every earlier store is done, as a fault's trap does.  On
 * x86-64 mfence: the locked instruction a compiler emits for a fence may
 * let a store miss go on in the background. */
static inline void store_fence(void)
{
#if defined(__x86_64__)
	asm volatile("mfence" ::: "memory");
#else
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

/* Write every line of ``evict`` (a buffer of more than the last level
 * cache): the lines of an earlier trial leave the caches. */
static void evict_caches(const struct opts *o, char *evict, size_t len)
{
	for (size_t i = 0; i < len; i += o->line)
		evict[i]++;
}

static double run_of_lines(const struct opts *o, char *p, char *evict, const uint32_t *pages, size_t n,
			   int lines)
{
	int64_t best = INT64_MAX;

	for (int trial = 0; trial < TRIALS; trial++) {
		evict_caches(o, evict, o->bytes / 2);
		int64_t t = now_ns();

		for (size_t i = 0; i < n; i++) {
			volatile char *q = p + pages[i] * o->page;

			for (int l = 0; l < lines; l++)
				q[l * o->line] = (char)trial;
			store_fence();
		}
		t = now_ns() - t;
		if (t < best)
			best = t;
	}
	return (double)best / n;
}

static void mode_run(const struct opts *o)
{
	size_t n = o->bytes / o->page;
	uint32_t *pages = malloc(n * sizeof(*pages));
	char *p, *evict;

	if (!pages)
		die("malloc");
	pin(o->cpus[0]);
	p = buffer(o->bytes, 1, o->node);
	evict = buffer(o->bytes / 2, 1, o->node);
	identity_shuffled(pages, n);
	for (int i = 0; i < o->nlist; i++)
		printf("lines=%d ns_per_page=%.3f\n", o->list[i], run_of_lines(o, p, evict, pages, n, o->list[i]));
	free(pages);
	munmap(evict, o->bytes / 2);
	munmap(p, o->bytes);
}

/* -- write allocation --------------------------------------------------- */

#if defined(__x86_64__)
static void flush_lines(const struct opts *o, char *p)
{
	for (size_t i = 0; i < o->bytes; i += o->line)
		_mm_clflush(p + i);
	_mm_mfence();
}

/* Dependent loads of every line of p in a random order: ns per load.
 * The next address depends on the byte loaded (0 or 1 moves it within
 * its line), so the loads cannot overlap. */
static double load_lines(const struct opts *o, const char *p, const uint32_t *order, size_t n)
{
	unsigned v = 0;
	int64_t t = now_ns();

	for (size_t i = 0; i < n; i++)
		v = *(volatile const unsigned char *)(p + order[i] * o->line + (v & 1));
	t = now_ns() - t;
	if (v > 255)
		abort();
	return (double)t / n;
}

/* p's lines flushed from every cache, then written by ``method`` (or not):
 * how long the loads of those lines take afterwards, the best of trials. */
static double after_writes(const struct opts *o, char *p, const uint32_t *order, size_t n, const char *method)
{
	double best = 1e30;

	for (int trial = 0; trial < 10 * TRIALS; trial++) {
		flush_lines(o, p);
		if (!strcmp(method, "byte"))		/* one byte a line: a partial write */
			for (size_t i = 0; i < o->bytes; i += o->line)
				p[i + o->line / 2] = 0;
		else if (strcmp(method, "none"))
			for (size_t off = 0; off < o->bytes; off += o->page)
				clear_page(p + off, o->page, method);
		_mm_mfence();
		double ns = load_lines(o, p, order, n);

		if (ns < best)
			best = ns;
	}
	return best;
}

static void mode_alloc(const struct opts *o)
{
	size_t n = o->bytes / o->line;
	uint32_t *order = malloc(n * sizeof(*order));
	char *p;

	if (!order)
		die("malloc");
	pin(o->cpus[0]);
	p = buffer(o->bytes, 0, o->node);
	identity_shuffled(order, n);
	load_lines(o, p, order, n);
	printf("cached_ns=%.3f\n", load_lines(o, p, order, n));
	printf("flushed_ns=%.3f\n", after_writes(o, p, order, n, "none"));
	printf("byte_ns=%.3f\n", after_writes(o, p, order, n, "byte"));
	printf("%s_ns=%.3f\n", o->method, after_writes(o, p, order, n, o->method));
	free(order);
	munmap(p, o->bytes);
}
#else
static void mode_alloc(const struct opts *o)
{
	(void)o;
	fprintf(stderr, "probe: alloc needs clflush (x86-64)\n");
	exit(3);
}
#endif

/* -- ping-pong ---------------------------------------------------------- */

struct pong {
	volatile uint64_t *line;
	long rounds;
	int cpu, parity;
	int64_t best;		/* the best batch of rounds, ns */
};

/* Thread ``parity`` waits for the count to reach its turn and advances it:
 * every step moves the line from the other CPU's cache to this one's. */
static void *pingpong_side(void *arg)
{
	struct pong *s = arg;

	pin(s->cpu);
	s->best = INT64_MAX;
	for (int batch = 0; batch < BATCHES; batch++) {
		uint64_t base = (uint64_t)batch * 2 * s->rounds;
		int64_t t = now_ns();

		for (uint64_t v = base + s->parity; v < base + 2 * s->rounds; v += 2) {
			while (__atomic_load_n(s->line, __ATOMIC_ACQUIRE) != v)
				;
			__atomic_store_n(s->line, v + 1, __ATOMIC_RELEASE);
		}
		t = now_ns() - t;
		if (t < s->best)
			s->best = t;
	}
	return NULL;
}

static void mode_pingpong(const struct opts *o)
{
	static uint64_t line[64] __attribute__((aligned(128)));	/* a line of its own */
	struct pong side[2];
	pthread_t tid[2];

	if (o->ncpus != 2) {
		fprintf(stderr, "probe: pingpong needs -p CPU,CPU\n");
		exit(2);
	}
	for (int i = 0; i < 2; i++) {
		side[i] = (struct pong){ .line = line, .rounds = o->count, .cpu = o->cpus[i], .parity = i };
		errno = pthread_create(&tid[i], NULL, pingpong_side, &side[i]);
		if (errno)
			die("pthread_create");
	}
	for (int i = 0; i < 2; i++)
		pthread_join(tid[i], NULL);
	/* a round is two transfers: to the second CPU and back */
	printf("ns_per_transfer=%.3f\n", (double)side[0].best / (2 * o->count));
}

/* -- options ------------------------------------------------------------ */

static int parse_list(int *list, const char *text)
{
	char *copy = strdup(text), *save = NULL;
	int n = 0;

	for (char *s = strtok_r(copy, ",", &save); s && n < MAX_LIST; s = strtok_r(NULL, ",", &save))
		list[n++] = atoi(s);
	free(copy);
	return n;
}

static void parse(struct opts *o, int argc, char **argv)
{
	int c;

	while ((c = getopt(argc, argv, "m:b:t:n:k:p:N:l:")) != -1) {
		switch (c) {
		case 'm': o->method = optarg; break;
		case 'b': o->bytes = strtoull(optarg, NULL, 0); break;
		case 't': o->threads = atoi(optarg); break;
		case 'n': o->count = atol(optarg); break;
		case 'k': o->nlist = parse_list(o->list, optarg); break;
		case 'p': o->ncpus = parse_list(o->cpus, optarg); break;
		case 'N': o->node = atoi(optarg); break;
		case 'l': o->line = strtoull(optarg, NULL, 0); break;
		default: exit(2);
		}
	}
	if (o->bytes < o->page || o->count < 1 || o->threads < 1 || o->threads > MAX_LIST || !o->ncpus ||
	    o->line < sizeof(void *) || o->page % o->line) {
		fprintf(stderr, "probe: bad options\n");
		exit(2);
	}
	for (int i = 0; i < o->nlist; i++)
		if (o->list[i] < 1 || o->list[i] > MAX_LIST) {
			fprintf(stderr, "probe: -k values are 1..%d\n", MAX_LIST);
			exit(2);
		}
}

static const struct {
	const char *name;
	void (*run)(const struct opts *);
} modes[] = {
	{ "clear", mode_clear }, { "chase", mode_chase }, { "run", mode_run },
	{ "alloc", mode_alloc }, { "pingpong", mode_pingpong },
};

int main(int argc, char **argv)
{
	struct opts o = { .method = "stosb", .count = 1, .threads = 1, .node = -1, .line = 64,
			  .list = { 1 }, .nlist = 1 };

	for (size_t i = 0; argc > 1 && i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strcmp(argv[1], modes[i].name))
			continue;
		o.page = sysconf(_SC_PAGESIZE);
		o.bytes = o.page;
		parse(&o, argc - 1, argv + 1);
		modes[i].run(&o);
		return 0;
	}
	fprintf(stderr, "probe: unknown mode %s: clear, chase, run, alloc or pingpong\n", argc > 1 ? argv[1] : "(none)");
	return 2;
}
