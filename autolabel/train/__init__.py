"""autolabel.train"""
