/*
 * cli — the `kizuna` command line: parses arguments and runs one command.
 * Thread: main thread.
 */
#ifndef KIZUNA_CORE_CLI_H
#define KIZUNA_CORE_CLI_H

/* Returns the process exit code. */
int cli_main(int argc, char **argv);

#endif
