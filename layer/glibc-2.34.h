/* Included into every C file of the layer's FFmpeg build (layer/build).
 *
 * Amazon Linux 2023 ships glibc 2.34. Building on glibc 2.35 or newer binds hypot() to the
 * GLIBC_2.35 symbol version, which Lambda's loader would reject; the older version computes the
 * same function. layer/check fails the build if any other newer symbol slips in. */
__asm__(".symver hypot,hypot@GLIBC_2.2.5");
