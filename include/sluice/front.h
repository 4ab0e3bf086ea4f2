/* The client side of a connection: accept, llhttp request parsing with limits and timeouts,
 * routing, local responses (STATIC, REDIRECT, errors), keep-alive and pipelining, and the
 * hand-over of an upgraded connection to a tunnel. */
#ifndef SLUICE_FRONT_H
#define SLUICE_FRONT_H

struct sl_listener;
struct sl_worker;

/* HOT: accept. Callback of a listener's read event: accepts every pending connection. */
void sl_front_on_accept(int fd, short what, void *arg);
/* Timer callback: accepting resumes after a pause for want of file descriptors. */
void sl_front_on_accept_resume(int fd, short what, void *arg);
/* Shutdown: closes connections that sit idle between requests; the others close after their
 * current response. */
void sl_front_stop(struct sl_worker *w);
/* End of the drain period: closes every HTTP-phase connection of <w> at once. */
void sl_front_close_all(struct sl_worker *w);

#endif
