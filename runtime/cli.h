/* cli.h: the subcommands of the klua program. Each lives in the module that
 * owns the feature and is dispatched by main.c. Each takes argc/argv with
 * argv[0] being the subcommand name, and returns the process exit status
 * (0 ok, 1 runtime failure, 2 usage error). Called from the main thread. */
#ifndef KL_CLI_H
#define KL_CLI_H

int kl_cmd_serve(int argc, char **argv); /* apiserver_cmd.c */
int kl_cmd_run(int argc, char **argv);   /* run_cmd.c */
int kl_cmd_dev(int argc, char **argv);   /* run_cmd.c */

/* Shared helper: prints "klua SUB: msg" plus a --help hint to stderr and
 * returns 2 (usage error). */
int kl_cli_usage_error(const char *sub, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
