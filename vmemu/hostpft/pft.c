/* pft on the host: the page fault test run on this machine's own kernel.
 *
 * Each repetition maps BYTES of anonymous memory, faults it from THREADS
 * threads (thread i pinned to the i-th CPU of -p, each on its own share of
 * the pages) touching LINES cache lines of every page, then unmaps it (the
 * exit of the seed's pft task).  One line of key=value pairs goes to
 * stdout; vmemu formats it as pft's row (vmemu/hostpft/run.py).
 *
 *   pft -b BYTES -f THREADS -r REP -c LINES -l LINE_SIZE [-z] -p CPU,CPU,...
 *
 * user and system are getrusage(RUSAGE_SELF) over the repetitions, wall
 * the monotonic clock from the first mmap to the last munmap; exit_ns the
 * wall time of the munmaps alone.  The area is madvise(MADV_NOHUGEPAGE):
 * one fault per base page, as on a 2.6 kernel (no THP, no mTHP).
 * Build: cc -O2 -pthread -o pft pft.c
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
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_CPUS 4096

struct job {
	size_t bytes, page, line;
	int threads, rep, lines, bzero;
	int cpus[MAX_CPUS], ncpus;
};

struct worker {
	const struct job *job;
	char *area;
	size_t first, npages;	/* the thread's pages: [first, first + npages) */
	int cpu;
	int error;
};

static void die(const char *what)
{
	fprintf(stderr, "pft: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int64_t tv_ns(struct timeval tv)
{
	return (int64_t)tv.tv_sec * 1000000000 + (int64_t)tv.tv_usec * 1000;
}

static int pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

static void *fault_pages(void *arg)
{
	struct worker *w = arg;
	const struct job *j = w->job;

	if (pin(w->cpu)) {
		w->error = errno;
		return NULL;
	}
	for (size_t i = w->first; i < w->first + w->npages; i++) {
		/* volatile: every touch is a store the kernel must serve */
		volatile char *page = w->area + i * j->page;

		for (int l = 0; l < j->lines; l++)
			page[l * j->line] = 1;
		if (j->bzero)
			memset((char *)page, 0, j->page);
	}
	return NULL;
}

/* One repetition: map, fault from every thread, unmap; returns the unmap's ns. */
static int64_t repetition(const struct job *j)
{
	pthread_t tid[MAX_CPUS];
	struct worker w[MAX_CPUS];
	size_t pages = j->bytes / j->page, first = 0;
	char *area = mmap(NULL, j->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int64_t t;

	if (area == MAP_FAILED)
		die("mmap");
	if (madvise(area, j->bytes, MADV_NOHUGEPAGE))
		die("madvise(MADV_NOHUGEPAGE)");
	for (int i = 0; i < j->threads; i++) {
		w[i] = (struct worker){ .job = j, .area = area, .first = first,
			.npages = pages / j->threads + ((size_t)i < pages % j->threads),
			.cpu = j->cpus[i % j->ncpus] };
		first += w[i].npages;
		errno = pthread_create(&tid[i], NULL, fault_pages, &w[i]);
		if (errno)
			die("pthread_create");
	}
	for (int i = 0; i < j->threads; i++) {
		pthread_join(tid[i], NULL);
		errno = w[i].error;
		if (errno)
			die("sched_setaffinity");
	}
	t = now_ns();
	if (munmap(area, j->bytes))
		die("munmap");
	return now_ns() - t;
}

static void parse_cpus(struct job *j, char *list)
{
	for (char *s = strtok(list, ","); s && j->ncpus < MAX_CPUS; s = strtok(NULL, ","))
		j->cpus[j->ncpus++] = atoi(s);
}

static void parse(struct job *j, int argc, char **argv)
{
	int c;

	while ((c = getopt(argc, argv, "b:f:r:c:l:zp:")) != -1) {
		switch (c) {
		case 'b': j->bytes = strtoull(optarg, NULL, 0); break;
		case 'f': j->threads = atoi(optarg); break;
		case 'r': j->rep = atoi(optarg); break;
		case 'c': j->lines = atoi(optarg); break;
		case 'l': j->line = strtoull(optarg, NULL, 0); break;
		case 'z': j->bzero = 1; break;
		case 'p': parse_cpus(j, optarg); break;
		default: exit(2);
		}
	}
	if (!j->bytes || j->threads < 1 || j->threads > MAX_CPUS || j->rep < 1 || j->lines < 1 ||
	    !j->line || j->lines * j->line > j->page || j->bytes / j->page < (size_t)j->threads) {
		fprintf(stderr, "pft: bad job\n");
		exit(2);
	}
}

int main(int argc, char **argv)
{
	static struct job j = { .threads = 1, .rep = 1, .lines = 1, .line = 64 };
	struct rusage r0, r1;
	int64_t t0, exit_ns = 0;

	j.page = sysconf(_SC_PAGESIZE);
	parse(&j, argc, argv);
	if (!j.ncpus)
		j.cpus[j.ncpus++] = 0;
	getrusage(RUSAGE_SELF, &r0);
	t0 = now_ns();
	for (int i = 0; i < j.rep; i++)
		exit_ns += repetition(&j);
	int64_t wall = now_ns() - t0;

	getrusage(RUSAGE_SELF, &r1);
	printf("bytes=%zu rep=%d threads=%d cachelines=%d page_size=%zu pages=%zu user_ns=%lld "
	       "system_ns=%lld wall_ns=%lld exit_ns=%lld minflt=%ld\n",
	       j.bytes, j.rep, j.threads, j.lines, j.page, j.bytes / j.page * j.rep,
	       (long long)(tv_ns(r1.ru_utime) - tv_ns(r0.ru_utime)),
	       (long long)(tv_ns(r1.ru_stime) - tv_ns(r0.ru_stime)), (long long)wall,
	       (long long)exit_ns, r1.ru_minflt - r0.ru_minflt);
	return 0;
}
