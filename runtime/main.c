/* main.c: the klua command line: parses the subcommand and dispatches. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "kl.h"

static const char usage[] =
    "usage: klua <command> [options]\n"
    "\n"
    "klua runs Kubernetes controllers written in Lua, with a C runtime that\n"
    "keeps an indexed cache of cluster objects over list+watch.\n"
    "\n"
    "commands:\n"
    "  run        run the controllers of a Lua script against a cluster\n"
    "  dev        run a script against an in-process local API server, with\n"
    "             hot reload\n"
    "  serve      run the local Kubernetes API server (for development/tests)\n"
    "  version    print the version\n"
    "  help       print this help\n"
    "\n"
    "Run 'klua <command> --help' for a command's options.\n";

typedef struct {
  const char *name;
  int (*fn)(int argc, char **argv);
} command;

static const command commands[] = {
    {"serve", kl_cmd_serve},
    {"run", kl_cmd_run},
    {"dev", kl_cmd_dev},
};

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(usage, stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    fputs(usage, stdout);
    return 0;
  }
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
    printf("klua %s\n", KL_VERSION);
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(cmd, commands[i].name))
      return commands[i].fn(argc - 1, argv + 1);
  if (cmd[0] == '-')
    fprintf(stderr, "klua: unknown flag '%s'\n", cmd);
  else
    fprintf(stderr, "klua: unknown command '%s'\n", cmd);
  fputs("Run 'klua --help' for usage.\n", stderr);
  return 2;
}
