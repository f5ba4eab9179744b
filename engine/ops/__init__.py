"""Operations: systemd notify/watchdog, health, metrics, the ops HTTP endpoint, kill switch,
circuit breakers, go/no-go check, reports, retention and notifications."""
