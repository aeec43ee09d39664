/*
 * help.c — `kimg CMD --help` / `-h`: the command's usage line, then one
 * line per option; and the check that the page names every option the
 * command's parser accepts (each letter of its getopt string, each name
 * of its long-option table), so the page cannot drift from the parser.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include "cmd.h"

/* Does TOKEN ("-f" or "--format") stand in LINE as a whole word: at the
 * start or after a blank, '[', '|' or ',', and not followed by a letter,
 * digit or '-'? */
static bool line_has_option(const char *line, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = strstr(line, token); p; p = strstr(p + 1, token)) {
        bool start_ok = p == line || strchr(" [|,(", p[-1]) != NULL;
        unsigned char next = (unsigned char)p[n];
        bool end_ok = !isalnum(next) && next != '-';
        if (start_ok && end_ok)
            return true;
    }
    return false;
}

static bool help_has_option(const char *const *lines, const char *token)
{
    for (size_t i = 0; lines[i]; i++)
        if (line_has_option(lines[i], token))
            return true;
    return false;
}

int cmd_help_missing(const char *optstring, const struct option *longopts,
                     const char *const *lines, void (*report)(const char *token))
{
    char token[80];
    int missing = 0;
    for (const char *p = optstring; *p; p++) {
        if (*p == ':' || *p == '+' || *p == '-')
            continue;
        snprintf(token, sizeof(token), "-%c", *p);
        if (!help_has_option(lines, token)) {
            missing++;
            if (report)
                report(token);
        }
    }
    for (size_t i = 0; longopts && longopts[i].name; i++) {
        snprintf(token, sizeof(token), "--%s", longopts[i].name);
        if (!help_has_option(lines, token)) {
            missing++;
            if (report)
                report(token);
        }
    }
    return missing;
}

static const char *help_cmd_name;

static void report_missing(const char *token)
{
    fprintf(stderr, "kimg: internal: '%s --help' does not describe %s\n", help_cmd_name, token);
}

int cmd_help(const char *name, const char *optstring, const struct option *longopts,
             const char *const *lines)
{
    print_synopsis(name);
    printf("\nOptions:\n");
    for (size_t i = 0; lines[i]; i++)
        printf("  %s\n", lines[i]);
    /* a page missing an option is a bug caught by tests/cli/095 (stderr
     * must stay empty there); the page is still printed and exits 0 */
    help_cmd_name = name;
    cmd_help_missing(optstring, longopts, lines, report_missing);
    return 0;
}
