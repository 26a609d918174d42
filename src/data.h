/*
 * data.h: the readers behind caps_dataset_load (dataset.c), one file per layout, not part of
 * the public API:
 *   idx.c          MNIST's IDX files (train-images-idx3-ubyte[.gz], ...)
 *   data_folder.c  image folders: dir/train/<class>/<image>, dir/test/<class>/<image>
 *   cifar.c        CIFAR-10's binary batches (data_batch_1.bin ..., test_batch.bin)
 * Each fills a zeroed caps_dataset (ds is zeroed first and left zeroed on failure) or returns
 * an error naming the file; labels are checked against num_classes (>= 1).
 */
#ifndef CAPS_DATA_H
#define CAPS_DATA_H

#include "capsnet.h"

/* Longest path the readers build (a folder plus a file name). */
#define CAPS_DATA_PATH_MAX 4096

int caps_idx_dir_load(caps_dataset *ds, const char *dir, int train, int num_classes,
                      caps_error *err);
int caps_folder_load(caps_dataset *ds, const char *dir, int train, int num_classes,
                     caps_error *err);
int caps_cifar_load(caps_dataset *ds, const char *dir, int train, int num_classes,
                    caps_error *err);

/* dir/name into out [CAPS_DATA_PATH_MAX] (no doubled '/'); CAPS_ERR_ARG naming dir when it
 * does not fit. */
int caps_data_join(char *out, const char *dir, const char *name, caps_error *err);

/* Reads dir/name, when it is there, as ds's class names (caps_class_names_read's rules);
 * want: the number of names it must hold, 0 for any. No such file: no names, CAPS_OK. */
int caps_data_read_names(caps_dataset *ds, const char *dir, const char *name, int want,
                         caps_error *err);

#endif /* CAPS_DATA_H */
