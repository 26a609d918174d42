/*
 * web_assets.h: the files of capsnet serve's page, compiled into the program.
 * web_assets.c is generated at build time from tools/web/ by scripts/embed.sh.
 */
#ifndef CAPS_WEB_ASSETS_H
#define CAPS_WEB_ASSETS_H

#include <stddef.h>

typedef struct {
    const char *path;          /* the URL path, e.g. "/app.js" */
    const char *type;          /* its Content-Type */
    const unsigned char *data;
    size_t size;
} web_asset;

extern const web_asset web_assets[];
extern const int web_asset_count;

#endif /* CAPS_WEB_ASSETS_H */
