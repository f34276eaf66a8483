// SPDX-License-Identifier: GPL-2.0
/*
 * cairn rig: a one-line GPIO chip standing in for a board's buzzer line, because Debian's 6.1
 * kernel has neither gpio-sim nor gpio-mockup. cairnd drives it through the GPIO character
 * device exactly as it drives a real buzzer line; every change of the line is logged to the
 * kernel log with the kernel's timestamp ("cairn-gpio-buzzer: 1"), which is how the rig
 * measures the alarm's on/off pattern, and the current level is readable at
 * /sys/module/cairn_gpio_buzzer/parameters/level.
 */
#include <linux/gpio/driver.h>
#include <linux/module.h>

static int level;
module_param(level, int, 0444);
MODULE_PARM_DESC(level, "the buzzer line's level now (0 or 1)");

static void buzzer_set(struct gpio_chip *chip, unsigned int offset, int value)
{
	value = value ? 1 : 0;
	if (value != level)
		pr_info("cairn-gpio-buzzer: %d\n", value);
	level = value;
}

static int buzzer_get(struct gpio_chip *chip, unsigned int offset)
{
	return level;
}

static int buzzer_output(struct gpio_chip *chip, unsigned int offset, int value)
{
	buzzer_set(chip, offset, value);
	return 0;
}

static int buzzer_direction(struct gpio_chip *chip, unsigned int offset)
{
	return GPIO_LINE_DIRECTION_OUT;
}

static const char *const line_names[] = { "buzzer" };

static struct gpio_chip buzzer_chip = {
	.label = "cairn-gpio-buzzer",
	.owner = THIS_MODULE,
	.base = -1,
	.ngpio = 1,
	.names = line_names,
	.get = buzzer_get,
	.set = buzzer_set,
	.direction_output = buzzer_output,
	.get_direction = buzzer_direction,
	.can_sleep = false,
};

static int __init buzzer_init(void)
{
	return gpiochip_add_data(&buzzer_chip, NULL);
}

static void __exit buzzer_exit(void)
{
	gpiochip_remove(&buzzer_chip);
}

module_init(buzzer_init);
module_exit(buzzer_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("cairn rig: a buzzer GPIO line that logs its level");
