/* Timing helpers shared by the dsv4 tool's demo and dsv4-bench (the device must be current). */
#ifndef DSV4_TOOLS_GPU_TIMING_H
#define DSV4_TOOLS_GPU_TIMING_H

#include "driver.h"

typedef dsv4_status (*dsv4_launch_fn)(void *user, CUstream stream);

typedef struct dsv4_timing {
  double graph_us;    /* per call: median over replays of a graph of `calls` back-to-back launches */
  double stream_us;   /* per call: `calls` plain launches back to back on a stream, median over reps */
  double cold_us;     /* one call after flushing L2 (writing a buffer larger than L2), median */
  double cold_bb_us;  /* per call, back to back with L2 flushed before each: a graph of (flush, call) pairs
                         against one of flushes alone, paired (dsv4_time_pair), the difference of the two */
} dsv4_timing;

/* Times fn: warm (graph and stream, `calls` back to back, `reps` repetitions) and cold-L2 (`reps` calls,
 * each after a flush of flush_bytes; and back to back in a graph, flushed before each call). */
dsv4_status dsv4_time_launches(const dsv4_driver *drv, CUstream stream, dsv4_launch_fn fn, void *user, int calls,
                               int reps, size_t flush_bytes, dsv4_timing *out);

/* fa against fb under the same clocks and heat: `reps` rounds, each replaying a graph of `calls` launches of fa
 * and one of fb back to back, the order alternating between rounds. Per call: the median of fa's times, of
 * fb's, and of the rounds' ratios fa / fb (a long GEMM's time drifts by several per cent between separate
 * measurements; the paired ratio drifts much less). calls, reps >= 1. */
dsv4_status dsv4_time_pair(const dsv4_driver *drv, CUstream stream, dsv4_launch_fn fa, void *ua, dsv4_launch_fn fb,
                           void *ub, int calls, int reps, double *a_us, double *b_us, double *ratio);

/* Device-to-device copy bandwidth in GB/s (bytes read + bytes written), median of reps copies. */
dsv4_status dsv4_copy_bandwidth(const dsv4_driver *drv, CUstream stream, size_t bytes, int reps, double *gbps);

double dsv4_median(double *v, int n);

#endif
