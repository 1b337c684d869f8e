/* The host kernel's own anonymous page-fault rate: mmap SIZE bytes,
 * touch every 4 KiB page once, unmap; prints faults and faults per second
 * (of the touches).  The whole process is also the baseline of a whole
 * vmemu pft run (benchmarks/run_all.py).
 * Build: cc -O2 -o hostfault hostfault.c */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

int main(int argc, char **argv)
{
	size_t size = argc > 1 ? strtoull(argv[1], NULL, 0) : (1UL << 30);
	size_t page = 4096, n = size / page;
	struct timespec a, b;
	char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (size_t i = 0; i < n; i++)
		p[i * page] = 1;
	clock_gettime(CLOCK_MONOTONIC, &b);
	double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
	printf("%zu %.1f\n", n, n / s);
	munmap(p, size);
	return 0;
}
