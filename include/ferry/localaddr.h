/*
 * The host's own addresses, as private destinations for untrusted clients (policy.h): a
 * connection to any of them is delivered over loopback whatever the address looks like.
 *
 * A list is immutable once made and reference-counted, so that the main thread can read a new
 * one (at start, on SIGHUP, when rtnetlink reports a change) and hand it to every worker, each
 * of which keeps its current list and reads it on its own loop without a lock.
 */
#ifndef FERRY_LOCALADDR_H
#define FERRY_LOCALADDR_H

#include <stdbool.h>
#include <stddef.h>

#include "ferry/addr.h"

struct localaddrs;

/*
 * A list of the given ranges (copied; host bits are cleared). One reference. NULL when out of
 * memory. Pure: the tests inject lists through it.
 */
struct localaddrs *localaddrs_new(const struct addr_cidr *ranges, size_t n);

/*
 * The addresses of every interface now (getifaddrs(3)): each address as a /32 or /128, and on
 * loopback interfaces the whole prefix (Linux delivers all of 192.0.2.0/24 locally after
 * "ip addr add 192.0.2.7/24 dev lo"). NULL with errno set on failure.
 */
struct localaddrs *localaddrs_read(void);

/* Take one more reference; returns l (NULL stays NULL). Safe from any thread. */
struct localaddrs *localaddrs_ref(struct localaddrs *l);
/* Drop a reference; the last one frees the list. NULL is ignored. Safe from any thread. */
void localaddrs_unref(struct localaddrs *l);

size_t localaddrs_count(const struct localaddrs *l);
/* The i-th range (i < count). */
const struct addr_cidr *localaddrs_get(const struct localaddrs *l, size_t i);
/* True when both hold the same ranges in the same order (NULL is the empty list). */
bool localaddrs_same(const struct localaddrs *a, const struct localaddrs *b);

/*
 * The shortest prefix among the ranges holding a (IPv4-mapped addresses count as IPv4, and
 * an IPv4 prefix is counted in IPv4 bits), or -1 when none does. NULL l holds nothing.
 */
int localaddrs_match(const struct localaddrs *l, const struct addr *a);

/*
 * An rtnetlink socket (non-blocking, close-on-exec) that becomes readable when an IPv4 or
 * IPv6 address is added or removed (RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR). -1 with errno.
 */
int localaddrs_watch_open(void);
/*
 * Read and discard what is waiting on the watch socket (the messages only say "changed": the
 * list is read again whole). Returns 1 when something was read or the kernel reported lost
 * messages (ENOBUFS), 0 when nothing was waiting, -1 with errno on another error.
 */
int localaddrs_watch_drain(int fd);

#endif
