/*
 * class_names.h: the inside of a model's class names (class_names.c), for the library's own
 * files: the one rule a name must follow, shared by caps_set_class_names, names files and
 * model files (checkpoint.c), and the copies that let a loader prepare names before it
 * changes a model. Not part of the public API.
 */
#ifndef CAPS_CLASS_NAMES_H
#define CAPS_CLASS_NAMES_H

#include <stddef.h>

#include "capsnet.h"

/* 0 when the len bytes at s are a class name: 1 to CAPS_CLASS_NAME_MAX-1 bytes, none below
 * 0x20 and none 0x7f. Else 1, with why[cap] saying what is wrong, e.g. "name too long
 * (expected at most 127 bytes, got 140)" (for a message that names the class or line). */
int caps_class_name_problem(const char *s, size_t len, char *why, size_t cap);

/* n malloc'ed copies of names (n >= 1) in a malloc'ed array; NULL when out of memory. */
char **caps_class_names_copy(int n, const char *const *names);

/* Gives m the array names (num_classes names, each already checked, as caps_class_names_copy
 * makes them), or none for NULL, and frees the names it had. Cannot fail. */
void caps_class_names_replace(capsnet *m, char **names);

#endif /* CAPS_CLASS_NAMES_H */
