// SPDX-License-Identifier: Apache-2.0
/* The VM tier's shared library for the dlopen / mmap / mprotect checks (palvm-helper.c). */
int palvm_answer(void)
{
	return 42;
}
