/* Unit tests for the config JSON reader (src/json.c): value positions by JSON path, one test
 * row per syntax error class with its exact line:col, recovery from typographic quotes and
 * unquoted IPs, duplicate keys, and agreement with jansson on valid input. Inputs are copied
 * into exactly-sized buffers so that ASan catches a read past the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/diag.h"
#include "sluice/json.h"

struct doc {
    json_t *root;
    struct sl_diags d;
    struct sl_jpos pos;
};

/* Parses <len> bytes of <text> (strlen when 0) from a heap copy without a terminator. */
static void doc_parse_len(struct doc *doc, const char *text, size_t len)
{
    char *copy;

    if (len == 0)
        len = strlen(text);
    copy = malloc(len != 0 ? len : 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    sl_diags_init(&doc->d, "t.json");
    sl_jpos_init(&doc->pos);
    doc->root = sl_json_parse(copy, len, &doc->pos, &doc->d);
    free(copy);
}

static void doc_parse(struct doc *doc, const char *text)
{
    doc_parse_len(doc, text, 0);
}

static void doc_free(struct doc *doc)
{
    json_decref(doc->root);
    sl_jpos_deinit(&doc->pos);
    sl_diags_deinit(&doc->d);
}

static void dump_diags(const struct doc *doc)
{
    sl_diags_print(&doc->d, stderr);
}

static void assert_pos(const struct doc *doc, const char *path, unsigned line, unsigned col)
{
    unsigned l, c;

    if (!sl_jpos_get(&doc->pos, path, &l, &c))
        fail_msg("no position for path '%s'", path);
    if (l != line || c != col)
        fail_msg("path '%s': expected %u:%u, got %u:%u", path, line, col, l, c);
}

static void assert_diag(const struct doc *doc, size_t i, unsigned line, unsigned col,
                        const char *path, const char *msg_part)
{
    const struct sl_diag *x;

    if (i >= doc->d.n) {
        dump_diags(doc);
        fail_msg("expected a diagnostic #%zu, have %zu", i, doc->d.n);
    }
    x = &doc->d.v[i];
    if (x->level != SL_DIAG_ERROR || x->line != line || x->col != col ||
        strcmp(x->path, path) != 0 || strstr(x->msg, msg_part) == NULL) {
        dump_diags(doc);
        fail_msg("diagnostic #%zu: expected %u:%u '%s' '...%s...', got %u:%u '%s' '%s'", i, line,
                 col, path, msg_part, x->line, x->col, x->path, x->msg);
    }
}

/*
 * Paths and the position table
 */

static void test_jpath(void **state)
{
    struct sl_jpath p;
    size_t a, b, c;

    (void)state;
    sl_jpath_init(&p);
    assert_string_equal(p.buf, "");
    a = sl_jpath_push_key(&p, "forwardingRules");
    assert_int_equal(a, 0);
    b = sl_jpath_push_index(&p, 0);
    sl_jpath_push_key(&p, "properties");
    c = sl_jpath_push_key(&p, "listenerPort");
    assert_string_equal(p.buf, "forwardingRules[0].properties.listenerPort");
    assert_int_equal(p.len, strlen(p.buf));
    sl_jpath_pop(&p, c);
    assert_string_equal(p.buf, "forwardingRules[0].properties");
    sl_jpath_push_key(&p, "a b");
    assert_string_equal(p.buf, "forwardingRules[0].properties[\"a b\"]");
    sl_jpath_push_key(&p, "_x9");
    assert_string_equal(p.buf, "forwardingRules[0].properties[\"a b\"]._x9");
    sl_jpath_pop(&p, b);
    assert_string_equal(p.buf, "forwardingRules");
    sl_jpath_pop(&p, a);
    assert_string_equal(p.buf, "");

    /* not plain: empty, digit first, '-', '.', quotes and backslashes escaped */
    sl_jpath_push_key(&p, "");
    sl_jpath_push_key(&p, "9a");
    sl_jpath_push_key(&p, "x-y");
    sl_jpath_push_key(&p, "a.b");
    sl_jpath_push_key(&p, "say \"hi\" \\o/");
    assert_string_equal(p.buf, "[\"\"][\"9a\"][\"x-y\"][\"a.b\"][\"say \\\"hi\\\" \\\\o/\"]");
    sl_jpath_init(&p);
    sl_jpath_push_key(&p, "line\nbreak");
    assert_string_equal(p.buf, "[\"line\\u000abreak\"]");
    sl_jpath_init(&p);
    sl_jpath_push_index(&p, 12);
    sl_jpath_push_key(&p, "name");
    assert_string_equal(p.buf, "[12].name");
}

static void test_jpath_overflow(void **state)
{
    struct sl_jpath p;
    char key[SL_JPATH_MAX + 10];
    size_t old, mid;

    (void)state;
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    sl_jpath_init(&p);
    sl_jpath_push_key(&p, "top");
    old = sl_jpath_push_key(&p, key);
    assert_string_equal(p.buf, "top...");
    mid = sl_jpath_push_index(&p, 3); /* stays marked, never overflows */
    assert_true(p.len < SL_JPATH_MAX);
    assert_int_equal(p.len, strlen(p.buf));
    sl_jpath_pop(&p, mid);
    sl_jpath_pop(&p, old);
    assert_string_equal(p.buf, "top");
    for (int i = 0; i < 200; i++)
        sl_jpath_push_key(&p, "abcdefgh");
    assert_true(p.len < SL_JPATH_MAX);
    assert_int_equal(p.len, strlen(p.buf));
}

static void test_jpos(void **state)
{
    struct sl_jpos m;
    unsigned line, col;
    char path[32];

    (void)state;
    sl_jpos_init(&m);
    assert_false(sl_jpos_get(&m, "", &line, &col));
    assert_int_equal(line, 0);
    assert_false(sl_jpos_get(NULL, "", &line, &col));
    assert_int_equal(col, 0);
    sl_jpos_put(&m, "", 1, 1);
    sl_jpos_put(&m, "a", 2, 3);
    sl_jpos_put(&m, "a", 4, 5); /* replaces */
    assert_true(sl_jpos_get(&m, "a", &line, &col));
    assert_int_equal(line, 4);
    assert_int_equal(col, 5);
    for (unsigned i = 0; i < 5000; i++) {
        snprintf(path, sizeof(path), "x[%u]", i);
        sl_jpos_put(&m, path, i + 1, i + 2);
    }
    assert_int_equal(m.n, 5002);
    for (unsigned i = 0; i < 5000; i++) {
        snprintf(path, sizeof(path), "x[%u]", i);
        assert_true(sl_jpos_get(&m, path, &line, &col));
        assert_int_equal(line, i + 1);
        assert_int_equal(col, i + 2);
    }
    assert_true(sl_jpos_get(&m, "", &line, &col));
    assert_int_equal(line, 1);
    assert_false(sl_jpos_get(&m, "x[5000]", &line, &col));
    sl_jpos_deinit(&m);
    sl_jpos_deinit(&m); /* idempotent */
}

/*
 * Positions of values
 */

static const char positions_doc[] =
    "{\n"
    "  \"applicationLoadBalancer\": {\"name\": \"alb\"},\n"
    "  \"forwardingRules\": [\n"
    "    {\n"
    "      \"properties\": {\n"
    "        \"name\": \"don\xe2\x80\x99t \xe2\x80\x9cstop\xe2\x80\x9d\", \"listenerPort\": 8080,\n"
    "\t\"protocol\":\t\"HTTP\",\n"
    "        \"httpRules\": [ { \"name\": \"a\" }, { \"name\": \"b\", \"weird key\": "
    "[true, null] } ]\n"
    "      }\n"
    "    }\n"
    "  ],\n"
    "  \"\xc3\xa9t\xc3\xa9\": [[], {}, -1.5e3]\n"
    "}\n";

static void test_positions(void **state)
{
    struct doc doc;

    (void)state;
    doc_parse(&doc, positions_doc);
    if (doc.root == NULL)
        dump_diags(&doc);
    assert_non_null(doc.root);
    assert_int_equal(doc.d.n, 0);
    assert_pos(&doc, "", 1, 1);
    assert_pos(&doc, "applicationLoadBalancer", 2, 30);
    assert_pos(&doc, "applicationLoadBalancer.name", 2, 39);
    assert_pos(&doc, "forwardingRules", 3, 22);
    assert_pos(&doc, "forwardingRules[0]", 4, 5);
    assert_pos(&doc, "forwardingRules[0].properties", 5, 21);
    assert_pos(&doc, "forwardingRules[0].properties.name", 6, 17);
    /* the value before it holds three 3-byte characters, each one column */
    assert_pos(&doc, "forwardingRules[0].properties.listenerPort", 6, 49);
    /* a tab is one column */
    assert_pos(&doc, "forwardingRules[0].properties.protocol", 7, 14);
    assert_pos(&doc, "forwardingRules[0].properties.httpRules", 8, 22);
    assert_pos(&doc, "forwardingRules[0].properties.httpRules[0]", 8, 24);
    assert_pos(&doc, "forwardingRules[0].properties.httpRules[0].name", 8, 34);
    assert_pos(&doc, "forwardingRules[0].properties.httpRules[1]", 8, 41);
    assert_pos(&doc, "forwardingRules[0].properties.httpRules[1].name", 8, 51);
    assert_pos(&doc, "forwardingRules[0].properties.httpRules[1][\"weird key\"]", 8, 69);
    assert_pos(&doc, "forwardingRules[0].properties.httpRules[1][\"weird key\"][0]", 8, 70);
    assert_pos(&doc, "forwardingRules[0].properties.httpRules[1][\"weird key\"][1]", 8, 76);
    assert_pos(&doc, "[\"\xc3\xa9t\xc3\xa9\"]", 12, 10);
    assert_pos(&doc, "[\"\xc3\xa9t\xc3\xa9\"][0]", 12, 11);
    assert_pos(&doc, "[\"\xc3\xa9t\xc3\xa9\"][1]", 12, 15);
    assert_pos(&doc, "[\"\xc3\xa9t\xc3\xa9\"][2]", 12, 19);
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_array_get(json_object_get(doc.root, "forwardingRules"), 0),
                            "properties"),
            "name")),
        "don\xe2\x80\x99t \xe2\x80\x9cstop\xe2\x80\x9d");
    doc_free(&doc);
}

static void test_positions_bom_crlf(void **state)
{
    struct doc doc;

    (void)state;
    /* the BOM takes no column; CR counts as a character before the LF */
    doc_parse(&doc, "\xef\xbb\xbf{\"a\": 1,\r\n \"b\": [2]}");
    assert_non_null(doc.root);
    assert_pos(&doc, "", 1, 1);
    assert_pos(&doc, "a", 1, 7);
    assert_pos(&doc, "b", 2, 7);
    assert_pos(&doc, "b[0]", 2, 8);
    doc_free(&doc);

    doc_parse(&doc, "  42 ");
    assert_non_null(doc.root);
    assert_int_equal(json_integer_value(doc.root), 42);
    assert_pos(&doc, "", 1, 3);
    doc_free(&doc);

    /* a NULL position table is allowed */
    assert_null(sl_json_parse("{", 1, NULL, NULL));
    {
        json_t *j = sl_json_parse("[1]", 3, NULL, NULL);

        assert_non_null(j);
        json_decref(j);
    }
}

/*
 * One row per error class: exactly one error, at an exact place.
 */

struct err_case {
    const char *name;
    const char *in;
    size_t len; /* 0: strlen(in) */
    unsigned line, col;
    const char *path;
    const char *msg; /* a part of the message */
};

static const struct err_case err_cases[] = {
    { "empty", "", 0, 1, 1, "", "empty input" },
    { "only spaces", " \n\t ", 0, 2, 3, "", "empty input" },
    { "only BOM", "\xef\xbb\xbf", 0, 1, 1, "", "empty input" },
    { "trailing comma object", "{\"a\": 1,}", 0, 1, 8, "",
      "trailing comma before '}': remove the ','" },
    { "trailing comma array", "[1, 2,\n]", 0, 1, 6, "", "trailing comma before ']'" },
    { "missing comma object", "{\"a\": 1\n \"b\": 2}", 0, 2, 2, "",
      "missing ',' before '\"': object members are separated by commas" },
    { "missing comma array", "[1 2]", 0, 1, 4, "", "missing ',' before '2'" },
    { "missing comma nested", "{\"a\": [1, {} {}]}", 0, 1, 14, "a", "missing ','" },
    { "missing colon", "{\"a\" 1}", 0, 1, 6, "a", "expected ':' after the key \"a\", found '1'" },
    { "missing colon eq", "{\"a\"= 1}", 0, 1, 5, "a",
      "expected ':' after the key \"a\", found '='" },
    { "line comment", "{ // x\n}", 0, 1, 3, "", "comments are not allowed in JSON" },
    { "block comment", "[1, /* x */ 2]", 0, 1, 5, "[1]", "remove the '/*' comment" },
    { "comment after value", "{\"a\": 1 // x\n}", 0, 1, 9, "", "comments are not allowed" },
    { "single-quoted value", "{\"a\": 'x'}", 0, 1, 7, "a",
      "single-quoted string 'x': JSON strings use double quotes (\"x\")" },
    { "single-quoted key", "{'a': 1}", 0, 1, 2, "", "single-quoted string 'a'" },
    { "lone single quote", "['", 0, 1, 2, "[0]", "unexpected single quote" },
    { "unquoted key", "{\n  name: 1}", 0, 2, 3, "",
      "unquoted key 'name': write it in double quotes, \"name\"" },
    { "tab in string", "{\"a\": \"x\ty\"}", 0, 1, 9, "a", "tab character in a string" },
    { "line break in string", "{\"a\": \"x\n\"}", 0, 1, 9, "a",
      "line break in the string opened at 1:7" },
    { "control char in string", "[\"\x01\"]", 0, 1, 3, "[0]", "control character U+0001" },
    { "invalid escape", "[\"ab\\x\"]", 0, 1, 5, "[0]", "invalid escape '\\x' in a string" },
    { "escape before non-ASCII", "[\"\\\xc3\xa9\"]", 0, 1, 3, "[0]",
      "'\\' followed by '\xc3\xa9'" },
    { "short \\u", "[\"\\u12G4\"]", 0, 1, 3, "[0]", "\\u needs 4 hex digits" },
    { "\\u at end", "[\"\\u12", 0, 1, 3, "[0]", "\\u needs 4 hex digits" },
    { "lone high surrogate", "[\"\\ud800\"]", 0, 1, 3, "[0]", "lone surrogate \\uD800" },
    { "high then not low", "[\"\\uD800\\u0041\"]", 0, 1, 3, "[0]", "must be followed by a low" },
    { "high at end", "[\"x\\uDBFF", 0, 1, 4, "[0]", "lone surrogate \\uDBFF" },
    { "lone low surrogate", "{\"k\": \"a\\udc00\"}", 0, 1, 9, "k", "lone surrogate \\uDC00" },
    { "escaped NUL", "[\"a\\u0000\"]", 0, 1, 4, "[0]", "NUL character in a string" },
    { "raw NUL in string", "[\"a\0b\"]", 7, 1, 4, "[0]", "NUL byte in a string" },
    { "raw NUL outside", "[1,\0 2]", 7, 1, 4, "[1]", "NUL byte in the input" },
    { "NUL first", "\0", 1, 1, 1, "", "NUL byte in the input" },
    { "UTF-16 with BOM", "\xff\xfe{\0}\0", 6, 1, 1, "", "the file is UTF-16" },
    { "UTF-16 without BOM", "{\0}\0", 4, 1, 2, "", "NUL byte in the input" },
    { "invalid UTF-8 in string", "[\"a\xff\"]", 0, 1, 4, "[0]", "invalid UTF-8 byte 0xFF" },
    { "Latin-1 in string", "[\"caf\xe9\"]", 0, 1, 6, "[0]", "invalid UTF-8 byte 0xE9" },
    { "overlong", "[\"\xc0\xaf\"]", 0, 1, 3, "[0]", "invalid UTF-8 byte 0xC0" },
    { "encoded surrogate", "[\"\xed\xa0\x80\"]", 0, 1, 3, "[0]", "invalid UTF-8 byte 0xED" },
    { "above U+10FFFF", "[\"\xf4\x90\x80\x80\"]", 0, 1, 3, "[0]", "invalid UTF-8" },
    { "truncated sequence", "[\"\xe2\x80", 0, 1, 3, "[0]", "invalid UTF-8 byte 0xE2" },
    { "invalid UTF-8 outside", "[\xff]", 0, 1, 2, "[0]", "invalid UTF-8 byte 0xFF" },
    { "non-breaking space", "{\xc2\xa0\"a\": 1}", 0, 1, 2, "", "non-breaking space (U+00A0)" },
    { "BOM inside", "[1,\xef\xbb\xbf 2]", 0, 1, 4, "[1]", "byte order mark (U+FEFF)" },
    { "other character", "[1, \xc3\xa9]", 0, 1, 5, "[1]", "unexpected '\xc3\xa9' (U+00E9)" },
    { "leading zero", "[012]", 0, 1, 2, "[0]", "number 012 has a leading zero" },
    { "negative leading zero", "{\"p\": -00}", 0, 1, 7, "p", "number -00 has a leading zero" },
    { "no fraction digits", "[1.]", 0, 1, 2, "[0]", "number 1. needs a digit after the '.'" },
    { "no integer digits", "[.5]", 0, 1, 2, "[0]", "number .5 needs a digit before the '.'" },
    { "empty exponent", "[1e]", 0, 1, 2, "[0]", "bad exponent in number 1e:" },
    { "signed empty exponent", "[2.5E+ ]", 0, 1, 2, "[0]", "bad exponent in number 2.5E+:" },
    { "bare minus", "[-]", 0, 1, 2, "[0]", "'-' must be followed by a digit, not ']'" },
    { "minus at end", "-", 0, 1, 1, "", "'-' must be followed by a digit, not end of input" },
    { "plus sign", "[+1]", 0, 1, 2, "[0]", "no '+' sign" },
    { "hex number", "[0x1F]", 0, 1, 2, "[0]", "invalid number 0x1F" },
    { "number then letters", "{\"port\": 80a}", 0, 1, 10, "port", "invalid number 80a" },
    { "integer overflow", "[9223372036854775808]", 0, 1, 2, "[0]",
      "integer 9223372036854775808 does not fit in 64 bits" },
    { "negative overflow", "[-9223372036854775809]", 0, 1, 2, "[0]", "does not fit in 64 bits" },
    { "huge integer", "[123456789012345678901234567890]", 0, 1, 2, "[0]", "does not fit" },
    { "real overflow", "[1e999]", 0, 1, 2, "[0]", "number 1e999 is too large" },
    { "garbage after root", "{} x", 0, 1, 4, "", "unexpected 'x': only whitespace may follow" },
    { "second root", "{}\n{}", 0, 2, 1, "", "only whitespace may follow" },
    { "extra closer", "[1]]", 0, 1, 4, "", "unexpected ']'" },
    { "word True", "{\"a\": True}", 0, 1, 7, "a",
      "unexpected 'True': a value is a \"string\", a number, true, false, null, an object or an "
      "array" },
    { "word websocket", "{\"type\": websocket}", 0, 1, 10, "type",
      "unexpected 'websocket': a value" },
    { "word undefined", "[undefined]", 0, 1, 2, "[0]", "unexpected 'undefined'" },
    { "word NaN", "[1, NaN]", 0, 1, 5, "[1]", "unexpected 'NaN'" },
    { "prefix of a literal", "[tru]", 0, 1, 2, "[0]", "unexpected 'tru'" },
    { "literal with suffix", "[nullx]", 0, 1, 2, "[0]", "unexpected 'nullx'" },
    { "-Infinity", "[-Infinity]", 0, 1, 2, "[0]", "not 'I'" },
    { "missing value", "{\"a\": }", 0, 1, 7, "a", "unexpected '}': a value is" },
    { "comma first", "[,1]", 0, 1, 2, "[0]", "unexpected ','" },
    { "wrong closer", "{\"a\": [1}", 0, 1, 9, "a",
      "unexpected '}': the array opened at 1:7 must be closed with ']'" },
    { "wrong closer object", "[{\"a\": 1]", 0, 1, 9, "[0]", "the object opened at 1:2" },
    { "eof in object", "\n{\n  \"a\": 1\n", 0, 4, 1, "",
      "unexpected end of input: object opened at 2:1 is not closed (missing '}')" },
    { "eof in nested array", "{\"a\": [1,\n  2", 0, 2, 4, "a",
      "unexpected end of input: array opened at 1:7 is not closed (missing ']')" },
    { "eof after colon", "{\"a\":", 0, 1, 6, "", "object opened at 1:1 is not closed" },
    { "eof after comma", "[1,", 0, 1, 4, "", "array opened at 1:1 is not closed" },
    { "eof after key", "{\"a\"", 0, 1, 5, "", "object opened at 1:1 is not closed" },
    { "eof after open", "[", 0, 1, 2, "", "array opened at 1:1" },
    { "eof in string", "[\"abc", 0, 1, 6, "[0]",
      "unexpected end of input: string opened at 1:2 is not closed (missing '\"')" },
    { "eof in escape", "[\"abc\\", 0, 1, 7, "[0]", "string opened at 1:2 is not closed" },
    { "eof in key", "{\"ab", 0, 1, 5, "", "string opened at 1:2 is not closed" },
};

static void test_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(err_cases); i++) {
        const struct err_case *c = &err_cases[i];
        struct doc doc;

        doc_parse_len(&doc, c->in, c->len);
        if (doc.root != NULL || doc.d.n != 1 || doc.d.n_errors != 1) {
            dump_diags(&doc);
            fail_msg("%s: expected exactly one error, got %zu (root %p)", c->name, doc.d.n,
                     (void *)doc.root);
        }
        print_message("%-26s %s\n", c->name, doc.d.v[0].msg);
        assert_diag(&doc, 0, c->line, c->col, c->path, c->msg);
        doc_free(&doc);
    }
}

static void test_depth(void **state)
{
    char in[2 * 70 + 1];
    struct doc doc;

    (void)state;
    /* 64 levels are fine */
    memset(in, '[', 64);
    memset(in + 64, ']', 64);
    doc_parse_len(&doc, in, 128);
    assert_non_null(doc.root);
    assert_int_equal(doc.d.n, 0);
    doc_free(&doc);

    /* the 65th opening bracket is reported where it stands */
    memset(in, '[', 70);
    memset(in + 70, ']', 70);
    doc_parse_len(&doc, in, 140);
    assert_null(doc.root);
    assert_int_equal(doc.d.n, 1);
    assert_diag(&doc, 0, 1, 65,
                "[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
                "[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
                "[0][0][0][0][0][0][0][0][0][0][0][0]",
                "nesting deeper than 64 levels");
    doc_free(&doc);

    /* objects count as well, and a hostile depth costs nothing */
    {
        size_t n = 100000;
        char *big = malloc(n);

        assert_non_null(big);
        for (size_t i = 0; i < n; i += 6)
            memcpy(big + i, "{\"a\":[", n - i < 6 ? n - i : 6);
        doc_parse_len(&doc, big, n);
        assert_null(doc.root);
        assert_int_equal(doc.d.n, 1);
        assert_diag(&doc, 0, 1, 32 * 6 + 1, doc.d.v[0].path, "nesting deeper than 64");
        doc_free(&doc);
        free(big);
    }
}

/*
 * Recovery: typographic quotes and unquoted IP addresses
 */

#define LQ "\xe2\x80\x9c" /* “ */
#define RQ "\xe2\x80\x9d" /* ” */
#define LS "\xe2\x80\x98" /* ‘ */
#define RS "\xe2\x80\x99" /* ’ */

static void test_typographic(void **state)
{
    struct doc doc;

    (void)state;
    doc_parse(&doc, "{\n  " LQ "name" RQ ": " LQ "alb" RQ ",\n  \"ok\": " LS "x" RS
                    ",\n  \"t\": " LQ "<id>" LQ "\n}");
    assert_null(doc.root);
    assert_int_equal(doc.d.n, 4);
    assert_int_equal(doc.d.n_errors, 4);
    assert_diag(&doc, 0, 2, 3, "name",
                "typographic quote " LQ " (U+201C) where JSON needs a plain double quote (\"); "
                "retype the quotes (the IONOS docs' examples use typographic ones)");
    assert_diag(&doc, 1, 2, 11, "name", "typographic quote " LQ " (U+201C)");
    assert_diag(&doc, 2, 3, 9, "ok", "typographic quote " LS " (U+2018)");
    assert_diag(&doc, 3, 4, 8, "t", "typographic quote " LQ " (U+201C)");
    doc_free(&doc);

    /* closing on a plain quote, and a ” or ’ that opens */
    doc_parse(&doc, "[" RQ "a\", " RS "b" RS "]");
    assert_null(doc.root);
    assert_int_equal(doc.d.n, 2);
    assert_diag(&doc, 0, 1, 2, "[0]", "typographic quote " RQ " (U+201D)");
    assert_diag(&doc, 1, 1, 7, "[1]", "typographic quote " RS " (U+2019)");
    doc_free(&doc);

    /* inside a plain-quoted string they are text */
    doc_parse(&doc, "{\"q\": \"don" RS "t " LQ "x" RQ "\"}");
    assert_non_null(doc.root);
    assert_string_equal(json_string_value(json_object_get(doc.root, "q")),
                        "don" RS "t " LQ "x" RQ);
    doc_free(&doc);

    /* a later fatal error is still reported after the recovered ones */
    doc_parse(&doc, "{" LQ "a" RQ ": 1, " LQ "b" RQ ": True}");
    assert_null(doc.root);
    assert_int_equal(doc.d.n, 3);
    assert_diag(&doc, 0, 1, 2, "a", "typographic");
    assert_diag(&doc, 1, 1, 10, "b", "typographic");
    assert_diag(&doc, 2, 1, 15, "b", "unexpected 'True'");
    doc_free(&doc);

    /* a string opened by one and broken by a later error: the quote comes first */
    doc_parse(&doc, "[" LQ "a\\q" RQ "]");
    assert_null(doc.root);
    assert_int_equal(doc.d.n, 2);
    assert_diag(&doc, 0, 1, 2, "[0]", "typographic");
    assert_diag(&doc, 1, 1, 4, "[0]", "invalid escape '\\q'");
    doc_free(&doc);

    /* out of place, a typographic quote is just unexpected */
    doc_parse(&doc, "{\"a\": 1" RQ "}");
    assert_null(doc.root);
    assert_int_equal(doc.d.n, 1);
    assert_diag(&doc, 0, 1, 8, "", "missing ',' before '" RQ "' (U+201D)");
    doc_free(&doc);
}

static void test_typographic_cap(void **state)
{
    char in[1024];
    size_t n = 0;
    struct doc doc;

    (void)state;
    /* 14 values, one per line: 10 errors, then one summary at the 11th */
    n += (size_t)snprintf(in + n, sizeof(in) - n, "[\n");
    for (int i = 0; i < 14; i++)
        n += (size_t)snprintf(in + n, sizeof(in) - n, "  " LQ "v%d" RQ "%s\n", i,
                              i < 13 ? "," : "");
    snprintf(in + n, sizeof(in) - n, "]\n");
    doc_parse(&doc, in);
    assert_null(doc.root);
    assert_int_equal(doc.d.n, 11);
    for (int i = 0; i < 10; i++)
        assert_diag(&doc, (size_t)i, (unsigned)i + 2, 3, doc.d.v[i].path, "typographic quote");
    assert_diag(&doc, 10, 12, 3, "[10]", "... and 4 more typographic quotes");
    assert_string_equal(doc.d.v[10].msg, "... and 4 more typographic quotes");
    doc_free(&doc);

    /* exactly 11: singular; and errors after the 11th keep their order */
    n = (size_t)snprintf(in, sizeof(in), "[");
    for (int i = 0; i < 11; i++)
        n += (size_t)snprintf(in + n, sizeof(in) - n, LQ "%d" RQ ",", i);
    snprintf(in + n, sizeof(in) - n, "1.2.3.4, 12.3.4.5]");
    doc_parse(&doc, in);
    assert_null(doc.root);
    assert_int_equal(doc.d.n, 13);
    assert_diag(&doc, 10, 1, 42, "[10]", "... and 1 more typographic quote");
    assert_string_equal(doc.d.v[10].msg, "... and 1 more typographic quote");
    assert_diag(&doc, 11, 1, 47, "[11]", "unquoted IP address 1.2.3.4");
    assert_diag(&doc, 12, 1, 56, "[12]", "unquoted IP address 12.3.4.5");
    doc_free(&doc);
}

static void test_unquoted_ip(void **state)
{
    struct doc doc;

    (void)state;
    doc_parse(&doc, "{\n"
                    "  \"listenerIp\":1.2.3.4,\n"
                    "  \"lbPrivateIps\": [\"10.0.0.1/24\", 10.20.30.40/24],\n"
                    "  \"v6\": 2001:db8::1, \"port\": 1.5, \"time\": 10:30\n"
                    "}");
    assert_null(doc.root);
    assert_int_equal(doc.d.n, 4);
    assert_diag(&doc, 0, 2, 16, "listenerIp", "unquoted IP address 1.2.3.4: write it as a string, "
                                              "\"1.2.3.4\"");
    assert_string_equal(doc.d.v[0].msg,
                        "unquoted IP address 1.2.3.4: write it as a string, \"1.2.3.4\"");
    assert_diag(&doc, 1, 3, 35, "lbPrivateIps[1]", "unquoted IP address 10.20.30.40/24: write it "
                                                   "as a string, \"10.20.30.40/24\"");
    assert_diag(&doc, 2, 4, 9, "v6", "unquoted IP address 2001:db8::1");
    /* one ':' is not an address: "10" is read as a number and the ':' is junk */
    assert_diag(&doc, 3, 4, 45, "", "unexpected ':': expected ',' or '}'");
    assert_pos(&doc, "listenerIp", 2, 16);
    assert_pos(&doc, "port", 4, 30);
    doc_free(&doc);

    /* at the root too */
    doc_parse(&doc, "127.0.0.1");
    assert_null(doc.root);
    assert_int_equal(doc.d.n, 1);
    assert_diag(&doc, 0, 1, 1, "", "unquoted IP address 127.0.0.1");
    doc_free(&doc);
}

/* The forwarding rule example of the IONOS WebSocket guide, as published (seed/). */
static const char ionos_rule[] =
    "{\n"
    "  " LQ "properties" RQ ": {\n"
    "    " LQ "name" RQ ": " LQ "websocket-rule" RQ ",\n"
    "    " LQ "protocol" RQ ": " LQ "HTTP" RQ ",\n"
    "    " LQ "listenerIp" RQ ":1.2.3.4,\n"
    "    " LQ "listenerPort" RQ ": 80,\n"
    "    " LQ "httpRules" RQ ": [\n"
    "      {\n"
    "        " LQ "name" RQ ": " LQ "forward" RQ ",\n"
    "        " LQ "type" RQ ": " LQ "FORWARD" RQ ",\n"
    "        " LQ "targetGroup" RQ ": " LQ "<target group id>" RQ "\n"
    "      }\n"
    "    ]\n"
    "}\n";

static void test_ionos_guide(void **state)
{
    struct doc doc;

    (void)state;
    doc_parse(&doc, ionos_rule);
    assert_null(doc.root);
    assert_int_equal(doc.d.n, 13);
    assert_int_equal(doc.d.n_errors, 13);
    assert_diag(&doc, 0, 2, 3, "properties", "typographic quote " LQ " (U+201C)");
    assert_diag(&doc, 1, 3, 5, "properties.name", "typographic quote");
    assert_diag(&doc, 2, 3, 13, "properties.name", "typographic quote");
    assert_diag(&doc, 3, 4, 5, "properties.protocol", "typographic quote");
    assert_diag(&doc, 4, 4, 17, "properties.protocol", "typographic quote");
    assert_diag(&doc, 5, 5, 5, "properties.listenerIp", "typographic quote");
    assert_diag(&doc, 6, 5, 18, "properties.listenerIp",
                "unquoted IP address 1.2.3.4: write it as a string, \"1.2.3.4\"");
    assert_diag(&doc, 7, 6, 5, "properties.listenerPort", "typographic quote");
    assert_diag(&doc, 8, 7, 5, "properties.httpRules", "typographic quote");
    assert_diag(&doc, 9, 9, 9, "properties.httpRules[0].name", "typographic quote");
    assert_diag(&doc, 10, 9, 17, "properties.httpRules[0].name", "typographic quote");
    /* the 11th of 14 stands for the last four */
    assert_diag(&doc, 11, 10, 9, "properties.httpRules[0].type",
                "... and 4 more typographic quotes");
    /* the body in the guide lacks its last '}' */
    assert_diag(&doc, 12, 15, 1, "",
                "unexpected end of input: object opened at 1:1 is not closed (missing '}')");
    doc_free(&doc);
}

/*
 * Duplicate keys
 */

static void test_duplicate_keys(void **state)
{
    struct doc doc;

    (void)state;
    doc_parse(&doc, "{\n"
                    "  \"name\": \"a\",\n"
                    "  \"x\": {\"name\": 1, \"y\": [{\"k\": 1}, {\"k\": 2}]},\n"
                    "  \"name\": \"b\",\n"
                    "  \"x\": {\"k\": 1, \"k\": 2},\n"
                    "  \"z\": 1\n"
                    "}");
    assert_null(doc.root);
    assert_int_equal(doc.d.n, 3);
    assert_diag(&doc, 0, 4, 3, "name", "duplicate key \"name\" (first at 2:3)");
    assert_string_equal(doc.d.v[0].msg, "duplicate key \"name\" (first at 2:3)");
    assert_diag(&doc, 1, 5, 3, "x", "duplicate key \"x\" (first at 3:3)");
    assert_diag(&doc, 2, 5, 17, "x.k", "duplicate key \"k\" (first at 5:9)");
    doc_free(&doc);

    /* keys are compared after unescaping; odd keys are shown escaped */
    doc_parse(&doc, "{\"a\\\"b\": 1, \"a\\u0022b\": 2}");
    assert_null(doc.root);
    assert_int_equal(doc.d.n, 1);
    assert_diag(&doc, 0, 1, 13, "[\"a\\\"b\"]", "duplicate key \"a\\\"b\" (first at 1:2)");
    doc_free(&doc);
}

/*
 * Valid JSON reads the same as with jansson
 */

static const char *const valid_docs[] = {
    "{}",
    "[]",
    "0",
    "-0",
    "\"\"",
    "true",
    "null",
    " [false , true,null ] ",
    "{\"a\": {\"b\": {\"c\": [1, [2, [3, {}]]]}}}",
    "[0, 1, -1, 9223372036854775807, -9223372036854775808, 12345678901234]",
    "[0.0, -0.0, 1.5, -2.25e-3, 1E10, 6.02214076e+23, 1e-300, 0.1, 123456789.123456789]",
    "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\\ud83d\\ude00\", "
    "\"\xf0\x9f\x98\x80 \xc3\xa9\"]",
    "{\"key with space\": 1, \"\": 2, \"\xc3\xa9\": 3, \"a.b\": [\"x\"]}",
    "{\"name\": \"don\xe2\x80\x99t\", \"q\": \"\xe2\x80\x9cquoted\xe2\x80\x9d\"}",
    "\t\r\n{\"applicationLoadBalancer\": {\"properties\": {\"ips\": [\"1.1.1.1\"], "
    "\"lbPrivateIps\": [\"10.20.30.40/24\"], \"listenerLan\": 1}}}\r\n",
};

static void test_roundtrip(void **state)
{
    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(valid_docs); i++) {
        json_error_t jerr;
        json_t *ref = json_loads(valid_docs[i], JSON_DECODE_ANY, &jerr);
        struct doc doc;

        if (ref == NULL)
            fail_msg("jansson rejects valid doc #%zu: %s", i, jerr.text);
        doc_parse(&doc, valid_docs[i]);
        if (doc.root == NULL) {
            dump_diags(&doc);
            fail_msg("valid doc #%zu rejected", i);
        }
        assert_int_equal(doc.d.n, 0);
        if (!json_equal(ref, doc.root)) {
            char *a = json_dumps(ref, JSON_ENCODE_ANY);
            char *b = json_dumps(doc.root, JSON_ENCODE_ANY);

            fail_msg("doc #%zu differs: jansson %s, ours %s", i, a, b);
        }
        /* integers stay integers and reals stay reals */
        assert_int_equal(json_typeof(ref), json_typeof(doc.root));
        json_decref(ref);
        doc_free(&doc);
    }
}

/* Every prefix of a document is either the whole value or an error, never a crash. */
static void test_prefixes_and_noise(void **state)
{
    const char *full = positions_doc;
    size_t len = strlen(full);
    unsigned seed = 12345;

    (void)state;
    for (size_t n = 0; n < len; n++) {
        struct doc doc;

        doc_parse_len(&doc, full, n == 0 ? 1 : n);
        if (n > 1 && n < len - 1) {
            assert_null(doc.root);
            assert_true(doc.d.n_errors >= 1);
        }
        doc_free(&doc);
    }
    /* random byte flips: the result is a tree without errors or NULL with errors */
    for (int round = 0; round < 3000; round++) {
        char buf[sizeof(positions_doc)];
        struct doc doc;

        memcpy(buf, full, len);
        for (int k = 0; k < 1 + round % 4; k++) {
            seed = seed * 1103515245u + 12345u;
            buf[(seed >> 8) % len] = (char)(seed >> 20);
        }
        doc_parse_len(&doc, buf, len);
        assert_true((doc.root != NULL) == (doc.d.n_errors == 0));
        doc_free(&doc);
    }
}

/*
 * Printed form of the diagnostics
 */

static void test_diag_format(void **state)
{
    struct sl_diags d;
    char buf[256], *out = NULL;
    size_t out_len = 0;
    FILE *f;

    (void)state;
    sl_diags_init(&d, "conf/x.json");
    sl_diag_add(&d, SL_DIAG_ERROR, 14, 23, "forwardingRules[0].properties.listenerPort",
                "%d is not a port", 70000);
    sl_diag_add(&d, SL_DIAG_WARNING, 3, 1, "targetGroups", "unused target group %s", "tg-2");
    sl_diag_add(&d, SL_DIAG_ERROR, 0, 0, "sluice.threads", "must be 1..%d", 64);
    sl_diag_add(&d, SL_DIAG_WARNING, 2, 7, "", "no path");
    sl_diag_add(&d, SL_DIAG_ERROR, 0, 0, "", "nothing but a message\non two lines");
    assert_int_equal(d.n, 5);
    assert_int_equal(d.n_errors, 3);
    assert_int_equal(d.n_warnings, 2);

    sl_diag_format(&d, &d.v[0], buf, sizeof(buf));
    assert_string_equal(buf, "conf/x.json:14:23: forwardingRules[0].properties.listenerPort: "
                             "70000 is not a port");
    sl_diag_format(&d, &d.v[1], buf, sizeof(buf));
    assert_string_equal(buf, "conf/x.json:3:1: targetGroups: warning: unused target group tg-2");
    sl_diag_format(&d, &d.v[2], buf, sizeof(buf));
    assert_string_equal(buf, "conf/x.json: sluice.threads: must be 1..64");
    sl_diag_format(&d, &d.v[3], buf, sizeof(buf));
    assert_string_equal(buf, "conf/x.json:2:7: warning: no path");
    sl_diag_format(&d, &d.v[4], buf, sizeof(buf));
    assert_string_equal(buf, "conf/x.json: nothing but a message on two lines");
    sl_diag_format(&d, &d.v[0], buf, 12); /* truncated, still terminated */
    assert_string_equal(buf, "conf/x.json");

    f = open_memstream(&out, &out_len);
    assert_non_null(f);
    sl_diags_print(&d, f);
    fclose(f);
    assert_string_equal(out, "conf/x.json:14:23: forwardingRules[0].properties.listenerPort: "
                             "70000 is not a port\n"
                             "conf/x.json:3:1: targetGroups: warning: unused target group tg-2\n"
                             "conf/x.json: sluice.threads: must be 1..64\n"
                             "conf/x.json:2:7: warning: no path\n"
                             "conf/x.json: nothing but a message on two lines\n");
    free(out);
    sl_diags_deinit(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jpath),
        cmocka_unit_test(test_jpath_overflow),
        cmocka_unit_test(test_jpos),
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_positions_bom_crlf),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_typographic),
        cmocka_unit_test(test_typographic_cap),
        cmocka_unit_test(test_unquoted_ip),
        cmocka_unit_test(test_ionos_guide),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_prefixes_and_noise),
        cmocka_unit_test(test_diag_format),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
