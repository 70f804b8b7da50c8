/* cli.c: helpers shared by the subcommands (linked into klua_core.so too,
 * since the command implementations live in the runtime's modules). */
#include <stdarg.h>
#include <stdio.h>

#include "cli.h"

int kl_cli_usage_error(const char *sub, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "klua %s: ", sub);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\nRun 'klua %s --help' for usage.\n", sub);
  va_end(ap);
  return 2;
}
