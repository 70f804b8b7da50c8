/* apiserver_cmd.c: `klua serve` (placeholder until the API server lands). */
#include <stdio.h>

#include "cli.h"

int kl_cmd_serve(int argc, char **argv) {
  (void)argc, (void)argv;
  fprintf(stderr, "klua serve: not built yet\n");
  return 1;
}
