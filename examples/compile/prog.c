void print_message(const char *name);

int main(void) {
    print_message("prog");
    return 0;
}
