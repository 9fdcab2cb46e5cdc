// An AF_XDP sender in copy mode, for tests/macvlan_guard.rs: a socket with CAP_NET_RAW only
// sends frames through the driver (`__dev_direct_xmit`), past every egress hook of the link
// it is bound to. Independent of nsfw.
//
//   xdpsend IFACE HEXFRAME COUNT
//
// Sends the frame COUNT times from queue 0 of IFACE. Exit status 2 (with a line on stderr
// starting "no AF_XDP:") when the kernel has no AF_XDP sockets; 1 on any other error.
#include <errno.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef SOL_XDP
#define SOL_XDP 283
#endif

#define FRAMES 64
#define FRAME_SIZE 2048

static int fail(const char *what) {
    perror(what);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: xdpsend IFACE HEXFRAME COUNT\n");
        return 1;
    }
    int fd = socket(AF_XDP, SOCK_RAW, 0);
    if (fd < 0) {
        if (errno == EAFNOSUPPORT) {
            fprintf(stderr, "no AF_XDP: %s\n", strerror(errno));
            return 2;
        }
        return fail("socket");
    }
    size_t len = strlen(argv[2]) / 2;
    if (len == 0 || len > FRAME_SIZE) {
        fprintf(stderr, "a frame of 1 to %d bytes\n", FRAME_SIZE);
        return 1;
    }
    void *umem;
    if (posix_memalign(&umem, 4096, FRAMES * FRAME_SIZE))
        return fail("posix_memalign");
    memset(umem, 0, FRAMES * FRAME_SIZE);
    struct xdp_umem_reg reg = {
        .addr = (uint64_t)(uintptr_t)umem,
        .len = FRAMES * FRAME_SIZE,
        .chunk_size = FRAME_SIZE,
    };
    if (setsockopt(fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof reg))
        return fail("XDP_UMEM_REG");
    int n = FRAMES;
    if (setsockopt(fd, SOL_XDP, XDP_UMEM_FILL_RING, &n, sizeof n))
        return fail("XDP_UMEM_FILL_RING");
    if (setsockopt(fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &n, sizeof n))
        return fail("XDP_UMEM_COMPLETION_RING");
    if (setsockopt(fd, SOL_XDP, XDP_TX_RING, &n, sizeof n))
        return fail("XDP_TX_RING");
    struct xdp_mmap_offsets off;
    socklen_t olen = sizeof off;
    if (getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &olen))
        return fail("XDP_MMAP_OFFSETS");
    char *tx = mmap(0, off.tx.desc + n * sizeof(struct xdp_desc), PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_POPULATE, fd, XDP_PGOFF_TX_RING);
    if (tx == MAP_FAILED)
        return fail("mmap TX ring");
    struct sockaddr_xdp sa = {
        .sxdp_family = AF_XDP,
        .sxdp_ifindex = if_nametoindex(argv[1]),
        .sxdp_queue_id = 0,
        .sxdp_flags = XDP_COPY,
    };
    if (sa.sxdp_ifindex == 0)
        return fail(argv[1]);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa))
        return fail("bind");
    unsigned char *first = umem;
    for (size_t i = 0; i < len; i++)
        if (sscanf(argv[2] + 2 * i, "%2hhx", first + i) != 1) {
            fprintf(stderr, "not hex: %s\n", argv[2]);
            return 1;
        }
    int count = atoi(argv[3]);
    if (count < 1 || count >= FRAMES) {
        fprintf(stderr, "COUNT from 1 to %d\n", FRAMES - 1);
        return 1;
    }
    uint32_t *prod = (uint32_t *)(tx + off.tx.producer);
    struct xdp_desc *desc = (struct xdp_desc *)(tx + off.tx.desc);
    for (int i = 0; i < count; i++) {
        uint64_t at = (uint64_t)(i + 1) * FRAME_SIZE;
        memcpy(first + at, first, len);
        uint32_t p = __atomic_load_n(prod, __ATOMIC_RELAXED);
        desc[p % n] = (struct xdp_desc){.addr = at, .len = (uint32_t)len};
        __atomic_store_n(prod, p + 1, __ATOMIC_RELEASE);
        // The kick: in copy mode the kernel sends what the ring holds now. A drop on the way
        // (a chain on an egress hook below: the kernel says EBUSY or ENOBUFS) is what the
        // caller counts, not an error of the send.
        if (sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 && errno != ENOBUFS &&
            errno != EAGAIN && errno != EBUSY)
            return fail("sendto");
        usleep(10000);
    }
    printf("sent %d\n", count);
    return 0;
}
