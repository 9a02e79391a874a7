// SPDX-License-Identifier: Apache-2.0
/*
 * The VM tier's guest helper (built on the host by scripts/vm/build-initramfs.sh, a dynamic
 * program like most): the operations busybox cannot do, each reporting how it failed.
 *
 *   palvm-helper true                      exit 0 (a dynamic program that runs)
 *   palvm-helper dlopen LIB                dlopen(LIB) and call palvm_answer()
 *   palvm-helper mmap-exec FILE            mmap FILE with PROT_READ|PROT_EXEC
 *   palvm-helper mprotect FILE             mmap FILE read-only, then mprotect adding PROT_EXEC
 *   palvm-helper anon-exec                 anonymous memory made executable (like a JIT)
 *   palvm-helper memfd-exec FILE ARGS...   copy FILE into a memfd and fexecve it
 *   palvm-helper deep-mkdir BASE N NAME    N nested directories "d" below BASE (relative
 *                                          names, so deeper than PATH_MAX allows), and the
 *                                          file NAME at the bottom
 *   palvm-helper deep-read BASE N NAME     read that file (walking down with O_PATH)
 *   palvm-helper burst FILE SECONDS        open FILE for reading as often as it can for
 *                                          SECONDS; prints "attempts N refused M"
 *
 * Exit status: 0 done, 1 refused with EPERM ("Operation not permitted" on stderr), 126 for
 * memfd-exec refused with EPERM (like a shell), 2 any other failure (dlopen: glibc keeps no
 * errno for a refused mapping, only "failed to map segment from shared object").
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int fail(const char *what)
{
	int e = errno;

	fprintf(stderr, "palvm-helper: %s: %s\n", what, strerror(e));
	return e == EPERM ? 1 : 2;
}

static int open_deep(const char *base, long n)
{
	int fd = open(base, O_PATH | O_DIRECTORY);

	for (long i = 0; fd >= 0 && i < n; i++) {
		int next = openat(fd, "d", O_PATH | O_DIRECTORY);

		close(fd);
		fd = next;
	}
	return fd;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";

	if (!strcmp(cmd, "true"))
		return 0;
	if (!strcmp(cmd, "dlopen") && argc == 3) {
		void *h = dlopen(argv[2], RTLD_NOW);
		int (*answer)(void);

		if (!h) {
			/* glibc says "failed to map segment" and keeps no errno: the audit event
			 * tells why (the VM test checks it). */
			fprintf(stderr, "palvm-helper: dlopen: %s\n", dlerror());
			return 2;
		}
		answer = (int (*)(void))dlsym(h, "palvm_answer");
		if (!answer || answer() != 42)
			return 2;
		return 0;
	}
	if ((!strcmp(cmd, "mmap-exec") || !strcmp(cmd, "mprotect")) && argc == 3) {
		int exec_now = !strcmp(cmd, "mmap-exec");
		int fd = open(argv[2], O_RDONLY);
		void *p;

		if (fd < 0)
			return fail("open");
		p = mmap(NULL, 4096, PROT_READ | (exec_now ? PROT_EXEC : 0), MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED)
			return fail("mmap");
		if (!exec_now && mprotect(p, 4096, PROT_READ | PROT_EXEC))
			return fail("mprotect");
		return 0;
	}
	if (!strcmp(cmd, "anon-exec")) {
		void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			return fail("mmap");
		memset(p, 0xc3, 4096); /* ret */
		if (mprotect(p, 4096, PROT_READ | PROT_EXEC))
			return fail("mprotect");
		((void (*)(void))p)();
		return 0;
	}
	if (!strcmp(cmd, "memfd-exec") && argc >= 3) {
		int in = open(argv[2], O_RDONLY);
		int fd = memfd_create("palvm-memfd", 0);
		char buf[65536];
		ssize_t n;

		if (in < 0 || fd < 0)
			return fail("open");
		while ((n = read(in, buf, sizeof(buf))) > 0)
			if (write(fd, buf, n) != n)
				return fail("write");
		fexecve(fd, argv + 2, environ);
		return fail("fexecve") == 1 ? 126 : 2;
	}
	if (!strcmp(cmd, "deep-mkdir") && argc == 5) {
		long n = atol(argv[3]);
		int fd = open(argv[2], O_PATH | O_DIRECTORY), f;

		for (long i = 0; fd >= 0 && i < n; i++) {
			int next;

			if (mkdirat(fd, "d", 0755) && errno != EEXIST)
				return fail("mkdirat");
			next = openat(fd, "d", O_PATH | O_DIRECTORY);
			close(fd);
			fd = next;
		}
		if (fd < 0)
			return fail("openat");
		f = openat(fd, argv[4], O_CREAT | O_WRONLY | O_TRUNC, 0644);
		if (f < 0 || write(f, "deep\n", 5) != 5)
			return fail("create");
		return 0;
	}
	if (!strcmp(cmd, "deep-read") && argc == 5) {
		int fd = open_deep(argv[2], atol(argv[3])), f;
		char buf[16];

		if (fd < 0)
			return fail("openat (directories)");
		f = openat(fd, argv[4], O_RDONLY);
		if (f < 0)
			return fail("open");
		if (read(f, buf, sizeof(buf)) < 0)
			return fail("read");
		return 0;
	}
	if (!strcmp(cmd, "burst") && argc == 4) {
		struct timespec t0, t;
		long attempts = 0, refused = 0;
		double secs = atof(argv[3]);

		clock_gettime(CLOCK_MONOTONIC, &t0);
		do {
			int f = open(argv[2], O_RDONLY);

			attempts++;
			if (f >= 0)
				close(f);
			else if (errno == EPERM)
				refused++;
			clock_gettime(CLOCK_MONOTONIC, &t);
		} while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < secs);
		printf("attempts %ld refused %ld\n", attempts, refused);
		return 0;
	}
	fprintf(stderr, "usage: see scripts/vm/palvm-helper.c\n");
	return 2;
}
